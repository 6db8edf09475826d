#include "devices/mmio_device.hpp"

#include <cinttypes>
#include <cstdio>

namespace dvmm::devices {

std::string fdt_node_name(std::string_view name, Gpa base) {
  char unit[24];
  std::snprintf(unit, sizeof unit, "@%" PRIx64, base);
  return std::string(name) + unit;
}

}  // namespace dvmm::devices
