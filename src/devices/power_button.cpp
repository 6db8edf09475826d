#include "devices/power_button.hpp"

namespace dvmm::devices {

u64 PowerButton::read(u64 offset, unsigned size) {
  if (size != 4) return 0;
  std::lock_guard lock(mutex_);
  switch (offset) {
    case kRegMagic:
      return kMagic;
    case kRegStatus:
      return pressed_ ? 1 : 0;
    case kRegPresses:
      return presses_;
    default:
      return 0;
  }
}

void PowerButton::write(u64 offset, unsigned size, u64 value) {
  if (size != 4 || offset != kRegStatus || (value & 1) == 0) return;
  std::lock_guard lock(mutex_);
  pressed_ = false;
  irq_.set_level(false);
}

void PowerButton::reset() {
  std::lock_guard lock(mutex_);
  pressed_ = false;
  irq_.set_level(false);
}

void PowerButton::press() {
  std::lock_guard lock(mutex_);
  pressed_ = true;
  ++presses_;
  irq_.set_level(true);
}

void PowerButton::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  fdt.begin_node(fdt_node_name("power-button", where.base));
  fdt.prop_string("compatible", "generic-uio");
  fdt.prop_reg(where.base, where.size);
  if (where.irq != 0) {
    fdt.prop_u32("interrupt-parent", where.interrupt_parent);
    fdt.prop_u32("interrupts", where.irq);
  }
  fdt.end_node();
}

}  // namespace dvmm::devices
