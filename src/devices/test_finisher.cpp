#include "devices/test_finisher.hpp"

namespace dvmm::devices {

void TestFinisher::write(u64 offset, unsigned size, u64 value) {
  // Like QEMU, only 16- to 64-bit writes at offset 0 count (a stray byte store must not
  // power the machine off).
  if (offset != 0 || size < 2 || !callback_) return;
  const u32 v = static_cast<u32>(value);
  switch (v & 0xffff) {
    case kPass:
      callback_({FinisherEvent::Kind::kPowerOff, 0});
      break;
    case kFail:
      callback_({FinisherEvent::Kind::kPowerOff, v >> 16});
      break;
    case kReset:
      callback_({FinisherEvent::Kind::kReboot, 0});
      break;
    default:
      break;
  }
}

void TestFinisher::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  fdt.begin_node(fdt_node_name("test", where.base));
  fdt.prop_strings("compatible", {"sifive,test1", "sifive,test0", "syscon"});
  fdt.prop_reg(where.base, where.size);
  fdt.prop_u32("phandle", where.phandle);
  fdt.end_node();
}

}  // namespace dvmm::devices
