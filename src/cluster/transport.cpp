// Names of the transport's channels, for messages.
#include "cluster/transport.hpp"

namespace dvmm::cluster {

const char* channel_name(Channel c) {
  switch (c) {
    case Channel::kDsm:
      return "dsm";
    case Channel::kControl:
      return "control";
    case Channel::kCpu:
      return "cpu";
    case Channel::kMmio:
      return "mmio";
    case Channel::kHeartbeat:
      return "heartbeat";
  }
  return "?";
}

}  // namespace dvmm::cluster
