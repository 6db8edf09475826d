// Test helper: N UcxTransports in one process (one UCX worker each, as in N node
// processes), bootstrapped in memory from N threads at once.
#pragma once

#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "cluster/bootstrap.hpp"
#include "cluster/ucx_transport.hpp"

namespace dvmm::cluster::testing {

inline JoinInfo test_join() {
  JoinInfo j;
  j.version = "test";
  j.description = {1, 2, 3};
  return j;
}

// Quiet logs unless a test wants them.
inline UcxOptions quiet(UcxOptions o = {}) {
  if (!o.log) o.log = [](const std::string&) {};
  return o;
}

inline std::vector<std::unique_ptr<UcxTransport>> make_group(unsigned n, UcxOptions options = {}) {
  options = quiet(std::move(options));
  auto rv = InProcessBootstrap::make_rendezvous(n);
  std::vector<std::unique_ptr<UcxTransport>> out(n);
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        BootstrapOptions bo;
        bo.join = test_join();
        bo.timeout = std::chrono::seconds(20);
        InProcessBootstrap b(rv, static_cast<NodeId>(i), bo);
        out[i] = UcxTransport::create(b, options);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return out;
}

inline void start_all(std::vector<std::unique_ptr<UcxTransport>>& g) {
  for (auto& t : g) t->start_delivery();
}

}  // namespace dvmm::cluster::testing
