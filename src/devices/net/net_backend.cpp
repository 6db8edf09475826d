// open_net_backend: the backend a --net spec names.
//
// Threads: any (the backends' own rules apply to what it returns).
#include "devices/net/net_backend.hpp"

#include "devices/net/slirp_backend.hpp"
#include "devices/net/switch_backend.hpp"
#include "devices/net/tap_backend.hpp"

namespace dvmm::devices {

std::unique_ptr<NetBackend> open_net_backend(const NetSpec& spec, const MacAddress& mac,
                                             const std::string& runtime_dir) {
  switch (spec.kind) {
    case NetSpec::Kind::kUser:
      return std::make_unique<SlirpBackend>(spec.forwards);
    case NetSpec::Kind::kSwitch:
      return std::make_unique<SwitchBackend>(runtime_dir, spec.name, mac);
    case NetSpec::Kind::kTap:
      return std::make_unique<TapBackend>(spec.name);
  }
  throw NetError("unknown network backend");
}

}  // namespace dvmm::devices
