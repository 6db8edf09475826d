// Registers of the inter-VM communication device (ivc_device.hpp, docs/IVC.md).
#include "devices/ivc/ivc_device.hpp"

#include <cstring>

namespace dvmm::devices::ivc {

IvcDevice::IvcDevice(IvcGroup& group, IrqLine& irq, Gpa shm_base, u32 expected)
    : group_(group), irq_(irq), shm_base_(shm_base), expected_(expected) {
  last_members_ = group_.members();
  group_.start([this] { on_group_event(); });
}

IvcDevice::~IvcDevice() {
  group_.stop();
}

IvcCounters IvcDevice::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

void IvcDevice::on_group_event() {
  std::lock_guard lock(mutex_);
  const u64 now = group_.members();
  if (now != last_members_) {
    last_members_ = now;
    ++generation_;
    ++counters_.member_changes;
    irq_status_members_ = kIrqMembers;
  }
  update_irq_locked();
}

void IvcDevice::update_irq_locked() {
  const u32 status = (group_.ready() != 0 ? kIrqMessage : 0) | irq_status_members_;
  const bool level = (status & irq_enable_) != 0;
  if (level != level_) {
    level_ = level;
    irq_.set_level(level);
  }
}

u64 IvcDevice::read(u64 offset, unsigned size) {
  std::lock_guard lock(mutex_);
  return read_locked(offset, size);
}

u64 IvcDevice::read_locked(u64 offset, unsigned size) {
  if (offset >= kRegGroupName && offset < kRegGroupName + 64) {
    // The name, NUL-padded, in any access width.
    char bytes[64] = {};
    const std::string& name = group_.name();
    std::memcpy(bytes, name.data(), std::min<std::size_t>(name.size(), sizeof(bytes)));
    u64 value = 0;
    const u64 at = offset - kRegGroupName;
    std::memcpy(&value, bytes + at, std::min<u64>(size, sizeof(bytes) - at));
    return value;
  }
  if (size == 4) {
    switch (offset) {
      case kRegMagic:
        return kMagic;
      case kRegVersion:
        return kVersion;
      case kRegRank:
        return group_.rank();
      case kRegMaxRanks:
        return kMaxRanks;
      case kRegExpected:
        return expected_;
      case kRegGeneration:
        return generation_;
      case kRegSendDest:
        return send_dest_;
      case kRegSendStatus:
        return send_status_;
      case kRegRecvCount:
        return group_.ready();
      case kRegRecvSrc:
        return recv_src_;
      case kRegIrqStatus:
        return (group_.ready() != 0 ? kIrqMessage : 0) | irq_status_members_;
      case kRegIrqEnable:
        return irq_enable_;
      case kRegInboxSize:
        return kInboxCapacity;
      default:
        return 0;
    }
  }
  if (size == 8) {
    switch (offset) {
      case kRegMembers:
        return group_.members();
      case kRegShmSize:
        return group_.shm_size();
      case kRegRecvData: {
        u32 source = 0;
        u64 value = 0;
        if (!group_.pop(&source, &value)) {
          recv_src_ = kRecvSrcNone;
          return 0;
        }
        recv_src_ = source;
        ++counters_.received;
        update_irq_locked();  // lowers the line when that was the last message
        return value;
      }
      default:
        return 0;
    }
  }
  return 0;
}

void IvcDevice::write(u64 offset, unsigned size, u64 value) {
  std::lock_guard lock(mutex_);
  if (size == 4) {
    const u32 v = static_cast<u32>(value);
    switch (offset) {
      case kRegSendDest:
        send_dest_ = v;
        break;
      case kRegIrqStatus:
        if (v & kIrqMembers) irq_status_members_ = 0;
        update_irq_locked();
        break;
      case kRegIrqEnable:
        irq_enable_ = v & (kIrqMessage | kIrqMembers);
        update_irq_locked();
        break;
      default:
        break;
    }
    return;
  }
  if (size == 8 && offset == kRegSendData) {
    const auto status = group_.send(send_dest_, value);
    send_status_ = static_cast<u32>(status);
    switch (status) {
      case IvcGroup::SendStatus::kOk:
        ++counters_.sent;
        break;
      case IvcGroup::SendStatus::kFull:
        ++counters_.send_full;
        break;
      default:
        ++counters_.send_refused;
        break;
    }
    // A message to ourselves arrives without a doorbell when the inbox was not empty.
    if (send_dest_ == group_.rank()) update_irq_locked();
  }
}

void IvcDevice::reset() {
  std::lock_guard lock(mutex_);
  // Messages for the guest that was running are not for the next one.
  u32 source;
  u64 value;
  while (group_.pop(&source, &value)) {
  }
  send_dest_ = 0;
  send_status_ = 0;
  recv_src_ = kRecvSrcNone;
  irq_status_members_ = 0;
  irq_enable_ = kIrqMessage | kIrqMembers;
  last_members_ = group_.members();
  update_irq_locked();
}

void IvcDevice::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  fdt.begin_node(fdt_node_name("ivc", where.base));
  // Linux's uio_pdrv_genirq binds this with uio_pdrv_genirq.of_id=generic-uio; map0 is the
  // registers, map1 the shared memory.
  fdt.prop_string("compatible", "generic-uio");
  const u64 shm_size = group_.shm_size();
  fdt.prop_cells("reg", {static_cast<u32>(where.base >> 32), static_cast<u32>(where.base),
                         static_cast<u32>(where.size >> 32), static_cast<u32>(where.size),
                         static_cast<u32>(shm_base_ >> 32), static_cast<u32>(shm_base_),
                         static_cast<u32>(shm_size >> 32), static_cast<u32>(shm_size)});
  if (where.irq != 0) {
    fdt.prop_u32("interrupt-parent", where.interrupt_parent);
    fdt.prop_u32("interrupts", where.irq);
  }
  fdt.end_node();
}

}  // namespace dvmm::devices::ivc
