// The inter-VM communication device of one group (docs/IVC.md): mailbox registers in a
// 4 KiB MMIO window and the group's shared memory, which the machine maps into guest-physical
// space as a memory window (memory::MemoryWindow). It describes itself as a "generic-uio"
// node with two regions and one interrupt, so Linux's uio_pdrv_genirq binds it and guest
// user space drives it through /dev/uioN.
//
// Threads: read()/write() from vCPU threads (serialised by a mutex: the registers are
// pairs such as SEND_DEST/SEND_DATA); the group's watcher thread re-evaluates the interrupt.
#pragma once

#include <mutex>
#include <string>

#include "devices/ivc/ivc_group.hpp"
#include "devices/mmio_device.hpp"

namespace dvmm::devices::ivc {

inline constexpr u32 kMagic = 0x43495644;  // "DVIC"
inline constexpr u32 kVersion = 1;

// Register offsets (docs/IVC.md).
enum Register : u64 {
  kRegMagic = 0x000,
  kRegVersion = 0x004,
  kRegRank = 0x008,
  kRegMaxRanks = 0x00c,
  kRegMembers = 0x010,
  kRegExpected = 0x018,
  kRegGeneration = 0x01c,
  kRegShmSize = 0x020,
  kRegSendDest = 0x028,
  kRegSendStatus = 0x02c,
  kRegSendData = 0x030,
  kRegRecvCount = 0x038,
  kRegRecvSrc = 0x03c,
  kRegRecvData = 0x040,
  kRegIrqStatus = 0x048,
  kRegIrqEnable = 0x04c,
  kRegInboxSize = 0x050,
  kRegGroupName = 0x100,  // 64 bytes
};
inline constexpr u32 kIrqMessage = 1u << 0;
inline constexpr u32 kIrqMembers = 1u << 1;
inline constexpr u32 kRecvSrcNone = 0xffffffff;

struct IvcCounters {
  u64 sent = 0;
  u64 send_full = 0;     // SEND_STATUS FULL
  u64 send_refused = 0;  // NOT_MEMBER or BAD_RANK
  u64 received = 0;
  u64 member_changes = 0;
};

class IvcDevice final : public MmioDevice {
 public:
  // `group` must outlive the device; `shm_base` is where the machine maps its memory.
  // `expected` is the members=N of the command line (0: not given).
  IvcDevice(IvcGroup& group, IrqLine& irq, Gpa shm_base, u32 expected);
  ~IvcDevice() override;
  IvcDevice(const IvcDevice&) = delete;
  IvcDevice& operator=(const IvcDevice&) = delete;

  std::string_view name() const override { return "ivc"; }
  u64 size() const override { return 0x1000; }
  u64 read(u64 offset, unsigned size) override;
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override;
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

  IvcGroup& group() { return group_; }
  IvcCounters counters() const;

 private:
  // Membership or inbox may have changed (the group's watcher thread).
  void on_group_event();
  void update_irq_locked();
  u64 read_locked(u64 offset, unsigned size);

  IvcGroup& group_;
  IrqLine& irq_;
  Gpa shm_base_;
  u32 expected_;
  mutable std::mutex mutex_;
  u32 send_dest_ = 0;
  u32 send_status_ = 0;
  u32 recv_src_ = kRecvSrcNone;
  u32 irq_status_members_ = 0;  // kIrqMembers when set
  u32 irq_enable_ = kIrqMessage | kIrqMembers;
  u32 generation_ = 0;
  u64 last_members_ = 0;
  bool level_ = false;
  IvcCounters counters_;
};

}  // namespace dvmm::devices::ivc
