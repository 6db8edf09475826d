// The Supervisor Binary Interface, implemented by the monitor itself (as KVM does on
// RISC-V): the guest kernel runs with no firmware, and each `ecall` from S-mode reaches
// Sbi::handle() as a cpu::ExitSbiCall. Follows the RISC-V SBI specification v2.0:
//   BASE   0x10        spec version 2.0, implementation id kImplId, probe_extension
//   TIME   "TIME"      set_timer -> the hart's stimecmp (Sstc: one comparator for both)
//   sPI    "sPI"       send_ipi -> sip.SSIP of each target
//   RFNC   "RFNC"      remote fence.i / sfence.vma(.asid): synchronous, every target has
//                      dropped its TLB and decoded code before the call returns
//   HSM    "HSM"       hart_start / hart_stop / hart_get_status / hart_suspend (retentive)
//   SRST   "SRST"      shutdown, cold and warm reboot
//   DBCN   "DBCN"      debug console write / read / write_byte
//   legacy 0x00..0x08  the v0.1 calls (set_timer, console_putchar/getchar, clear_ipi,
//                      send_ipi, remote fences, shutdown); Linux 6.1's earlycon=sbi and
//                      hvc0 use the console ones. They return their value in a0 only.
// Anything else returns SBI_ERR_NOT_SUPPORTED.
//
// The Sbi also owns the HSM state of every hart (the per-hart state machine of spec
// chapter 9): the vCPU threads consult it to know whether their hart should run.
//
// Threads: handle() runs on the calling hart's thread. The HSM accessors may be called from
// any thread; one mutex guards the states. The SbiPlatform callbacks are called without
// that mutex held.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "base/types.hpp"
#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "memory/guest_ram.hpp"
#include "vmm/node_links.hpp"

namespace dvmm::vmm {

// SBI return codes (spec 2.0, table 1).
enum SbiError : i64 {
  kSbiSuccess = 0,
  kSbiErrFailed = -1,
  kSbiErrNotSupported = -2,
  kSbiErrInvalidParam = -3,
  kSbiErrDenied = -4,
  kSbiErrInvalidAddress = -5,
  kSbiErrAlreadyAvailable = -6,
  kSbiErrAlreadyStarted = -7,
  kSbiErrAlreadyStopped = -8,
};

// Extension ids.
enum SbiExtension : u64 {
  kSbiLegacySetTimer = 0x00,
  kSbiLegacyConsolePutchar = 0x01,
  kSbiLegacyConsoleGetchar = 0x02,
  kSbiLegacyClearIpi = 0x03,
  kSbiLegacySendIpi = 0x04,
  kSbiLegacyRemoteFenceI = 0x05,
  kSbiLegacyRemoteSfenceVma = 0x06,
  kSbiLegacyRemoteSfenceVmaAsid = 0x07,
  kSbiLegacyShutdown = 0x08,
  kSbiExtBase = 0x10,
  kSbiExtTime = 0x54494D45,
  kSbiExtIpi = 0x735049,
  kSbiExtRfence = 0x52464E43,
  kSbiExtHsm = 0x48534D,
  kSbiExtSrst = 0x53525354,
  kSbiExtDbcn = 0x4442434E,
};

// HSM hart states (spec 2.0, table 9.1).
enum class HsmState : u32 {
  kStarted = 0,
  kStopped = 1,
  kStartPending = 2,
  kStopPending = 3,
  kSuspended = 4,
  kSuspendPending = 5,
  kResumePending = 6,
};
const char* hsm_state_name(HsmState s);

// What the SBI needs from the machine around it.
class SbiPlatform {
 public:
  virtual ~SbiPlatform() = default;
  virtual unsigned hart_count() const = 0;
  virtual cpu::Hart& hart(HartId id) = 0;
  virtual memory::GuestRam& ram() = 0;
  // Debug console output (DBCN, legacy putchar).
  virtual void console_write(std::string_view bytes) = 0;
  // Debug console input: the next byte, or -1 when there is none.
  virtual int console_read() = 0;
  // A hart's HSM state changed (it should start); its vCPU thread must look.
  virtual void wake(HartId id) = 0;
  // True once the VM is stopping: waits for other harts give up.
  virtual bool stopping() const = 0;
  // The other nodes of a distributed VM (IPIs, fences and HSM calls for harts that are not
  // local). Default: one node, everything local.
  virtual NodeLinks& links();
};

// What the vCPU loop does after handle() returns.
struct SbiOutcome {
  enum class Action {
    kResume,    // a0/a1 are set; run the hart again
    kStopHart,  // hart_stop: the hart is STOP_PENDING; park it (HSM says when to restart)
    kSuspend,   // retentive hart_suspend: a0 is set; wait as for WFI, then resume
    kShutdown,  // SRST shutdown / legacy shutdown: power off with `status`
    kReboot,    // SRST cold or warm reboot
  };
  Action action = Action::kResume;
  u32 status = 0;
};

class Sbi {
 public:
  // dvmm has no registered SBI implementation id. The SBI spec's registry (chapter
  // "Implementation IDs") hands out small numbers from 0 (BBL) upwards; 0xD7 stays clear of
  // them. Linux only prints it ("SBI implementation ID=0xd7").
  static constexpr u64 kImplId = 0xD7;
  static constexpr u64 kSpecVersion = (u64{2} << 24) | 0;  // 2.0

  // `impl_version` is reported by get_impl_version (dvmm's version, 0xMMmmpp).
  Sbi(SbiPlatform& platform, u64 impl_version = 0);

  // Handles one SBI call of `caller` (on its thread): sets a0/a1 unless the outcome says
  // the hart does not return.
  SbiOutcome handle(cpu::Hart& caller, const cpu::ExitSbiCall& call);

  // ---- HSM state, any thread
  // Boot: `boot_hart` STARTED, every other hart STOPPED.
  void reset_harts(HartId boot_hart);
  HsmState state(HartId id) const;
  struct StartRequest {
    u64 start_addr;
    u64 opaque;
  };
  // For the vCPU loop: when the hart is START_PENDING, returns where to start it and marks it
  // STARTED (the caller resets the hart before running it).
  std::optional<StartRequest> take_start(HartId id);
  // For the vCPU loop: STOP_PENDING -> STOPPED once the hart is parked.
  void finish_stop(HartId id);
  // For the vCPU loop: SUSPENDED -> STARTED when a retentive suspend ends.
  void end_suspend(HartId id);
  // HSM hart_start of a hart of this node (the guest's call, or one forwarded by another
  // node): STOPPED -> START_PENDING and wakes its vCPU. The SBI error code.
  i64 hart_start_local(HartId id, u64 start_addr, u64 opaque);

  // Calls per extension, for metrics: index by extension_index().
  static constexpr std::size_t kCounterSlots = 9;
  static std::size_t extension_index(u64 eid);  // 0 legacy, 1 base, ..., 7 dbcn, 8 other
  u64 calls(std::size_t slot) const { return calls_[slot].load(std::memory_order_relaxed); }

 private:
  struct Result {
    i64 error;
    u64 value;
  };
  Result base(u64 fid, const u64* a);
  Result time(cpu::Hart& caller, u64 fid, const u64* a);
  Result ipi(u64 fid, const u64* a);
  Result rfence(cpu::Hart& caller, u64 fid, const u64* a);
  Result hsm(cpu::Hart& caller, u64 fid, const u64* a, SbiOutcome* outcome);
  Result srst(u64 fid, const u64* a, SbiOutcome* outcome);
  Result dbcn(cpu::Hart& caller, u64 fid, const u64* a);
  // Makes guest RAM page `page` usable for `type` on this node (a distributed VM may have
  // to fetch it). The caller then touches it without serving flush requests in between,
  // so no other node can take it away meanwhile. False when the VM is stopping.
  bool own_page(cpu::Hart& caller, u64 page, memory::AccessType type);
  // Legacy calls: the value for a0.
  i64 legacy(cpu::Hart& caller, u64 eid, const u64* a, SbiOutcome* outcome);

  bool probe(u64 eid) const;
  // Expands (hart_mask, hart_mask_base) into a hart set; false if a hart is invalid.
  bool decode_mask(u64 mask, u64 base, std::vector<HartId>* harts) const;
  // Reads a legacy hart mask through the caller's virtual address; nullopt if unmapped.
  std::optional<u64> read_legacy_mask(cpu::Hart& caller, u64 va);
  void send_ipis(const std::vector<HartId>& harts);
  // Makes every hart in `harts` flush its TLB and decoded code, and waits until all have.
  void remote_flush(cpu::Hart& caller, const std::vector<HartId>& harts);

  SbiPlatform& platform_;
  u64 impl_version_;

  struct HartSlot {
    HsmState state = HsmState::kStopped;
    u64 start_addr = 0;
    u64 opaque = 0;
  };
  mutable std::mutex mutex_;
  std::vector<HartSlot> harts_;
  std::array<std::atomic<u64>, kCounterSlots> calls_{};
};

}  // namespace dvmm::vmm
