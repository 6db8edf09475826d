// Bootstrap: the local (UNIX socket) and TCP rendezvous between threads, refusals (version,
// description, node count, duplicate rank), timeouts naming the missing nodes, the
// cluster file and the launcher environments.
#include "cluster/bootstrap.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace dvmm::cluster {
namespace {

using namespace std::chrono_literals;

std::string temp_dir() {
  char tmpl[] = "/tmp/dvmm-boot-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  return tmpl;
}

BootstrapOptions opts(std::string version = "v1", std::vector<u8> desc = {1, 2, 3},
                      std::chrono::milliseconds timeout = 10s) {
  BootstrapOptions o;
  o.join.version = std::move(version);
  o.join.description = std::move(desc);
  o.timeout = timeout;
  o.log = [](const std::string&) {};
  return o;
}

struct Outcome {
  std::optional<PeerTable> table;
  std::string error;
};

// Runs make(rank).exchange(address rank) on one thread per rank.
std::vector<Outcome> run_all(unsigned n, std::function<std::unique_ptr<Bootstrap>(NodeId)> make) {
  std::vector<Outcome> out(n);
  std::vector<std::thread> ts;
  for (unsigned r = 0; r < n; ++r) {
    ts.emplace_back([&, r] {
      try {
        auto b = make(static_cast<NodeId>(r));
        std::vector<u8> addr = {static_cast<u8>(r), 0xaa, static_cast<u8>(r * 3)};
        out[r].table = b->exchange(addr);
      } catch (const ClusterError& e) {
        out[r].error = e.what();
      }
    });
  }
  for (auto& t : ts) t.join();
  return out;
}

void expect_same_tables(const std::vector<Outcome>& out) {
  for (unsigned r = 0; r < out.size(); ++r) {
    ASSERT_TRUE(out[r].table) << "rank " << r << ": " << out[r].error;
    const PeerTable& t = *out[r].table;
    ASSERT_EQ(t.addresses.size(), out.size());
    EXPECT_EQ(t.session, out[0].table->session);
    EXPECT_NE(t.session, 0u);
    for (unsigned i = 0; i < out.size(); ++i) {
      EXPECT_EQ(t.addresses[i],
                (std::vector<u8>{static_cast<u8>(i), 0xaa, static_cast<u8>(i * 3)}));
    }
  }
}

TEST(LocalBootstrap, FourNodesGetTheSameTable) {
  std::string dir = temp_dir();
  auto out = run_all(4, [&](NodeId r) {
    auto o = opts();
    o.join.node_info = {static_cast<u8>(0x10 + r)};
    return std::make_unique<LocalBootstrap>(dir, r, 4, o);
  });
  expect_same_tables(out);
  for (unsigned i = 0; i < 4; ++i) {
    EXPECT_EQ(out[2].table->node_infos[i], std::vector<u8>{static_cast<u8>(0x10 + i)});
    EXPECT_NE(out[2].table->hosts[i].find("pid"), std::string::npos);
  }
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, JoinersMayStartBeforeRankZero) {
  std::string dir = temp_dir();
  auto out = run_all(3, [&](NodeId r) {
    if (r == 0) std::this_thread::sleep_for(300ms);
    return std::make_unique<LocalBootstrap>(dir, r, 3, opts());
  });
  expect_same_tables(out);
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, DifferentVersionIsRefusedOnBothSides) {
  std::string dir = temp_dir();
  auto out = run_all(3, [&](NodeId r) {
    return std::make_unique<LocalBootstrap>(dir, r, 3, opts(r == 2 ? "v2" : "v1", {1, 2, 3}, 2s));
  });
  for (auto& o : out) EXPECT_FALSE(o.table);
  EXPECT_NE(out[0].error.find("refused node 2"), std::string::npos) << out[0].error;
  EXPECT_NE(out[0].error.find("dvmm version 'v2' differs from rank 0's 'v1'"), std::string::npos)
      << out[0].error;
  EXPECT_NE(out[2].error.find("refused this node (rank 2)"), std::string::npos) << out[2].error;
  // Rank 1 may have joined before (told by rank 0) or after (refused as rank 0 is gone).
  EXPECT_FALSE(out[1].error.empty());
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, DifferentDescriptionIsRefused) {
  std::string dir = temp_dir();
  auto out = run_all(2, [&](NodeId r) {
    return std::make_unique<LocalBootstrap>(dir, r, 2, opts("v1", {r == 1 ? u8{9} : u8{1}}));
  });
  EXPECT_NE(out[0].error.find("machine description differs"), std::string::npos) << out[0].error;
  EXPECT_NE(out[1].error.find("machine description differs"), std::string::npos) << out[1].error;
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, DifferentNodeCountIsRefused) {
  std::string dir = temp_dir();
  auto out = run_all(2, [&](NodeId r) {
    return std::make_unique<LocalBootstrap>(dir, r, r == 0 ? 2 : 3, opts());
  });
  EXPECT_NE(out[0].error.find("node count 3 differs from rank 0's 2"), std::string::npos)
      << out[0].error;
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, TimeoutNamesTheNodesThatNeverJoined) {
  std::string dir = temp_dir();
  // Ranks 0 and 2 of 4 start; 1 and 3 never do.
  std::vector<Outcome> out(2);
  std::thread t0([&] {
    try {
      LocalBootstrap b(dir, 0, 4, opts("v1", {1, 2, 3}, 700ms));
      out[0].table = b.exchange(std::vector<u8>{0});
    } catch (const ClusterError& e) {
      out[0].error = e.what();
    }
  });
  std::thread t2([&] {
    try {
      LocalBootstrap b(dir, 2, 4, opts("v1", {1, 2, 3}, 700ms));
      out[1].table = b.exchange(std::vector<u8>{2});
    } catch (const ClusterError& e) {
      out[1].error = e.what();
    }
  });
  t0.join();
  t2.join();
  EXPECT_NE(out[0].error.find("nodes 1, 3 of 4 never joined"), std::string::npos) << out[0].error;
  EXPECT_NE(out[1].error.find("nodes 1, 3 of 4 never joined"), std::string::npos) << out[1].error;
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, JoinerWithoutRankZeroTimesOutClearly) {
  std::string dir = temp_dir();
  LocalBootstrap b(dir, 1, 2, opts("v1", {1}, 300ms));
  try {
    b.exchange(std::vector<u8>{1});
    FAIL() << "no error";
  } catch (const ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("could not reach rank 0"), std::string::npos) << e.what();
  }
  rmdir(dir.c_str());
}

TEST(LocalBootstrap, SingleNodeNeedsNoRendezvous) {
  LocalBootstrap b("/nonexistent/dir", 0, 1, opts());
  PeerTable t = b.exchange(std::vector<u8>{7});
  ASSERT_EQ(t.addresses.size(), 1u);
  EXPECT_EQ(t.addresses[0], std::vector<u8>{7});
}

TEST(LocalBootstrap, BadArgumentsAreClusterErrors) {
  EXPECT_THROW(LocalBootstrap("/tmp", 3, 3, opts()), ClusterError);
  EXPECT_THROW(LocalBootstrap("/tmp", 0, 0, opts()), ClusterError);
  EXPECT_THROW(LocalBootstrap("/tmp/" + std::string(200, 'x'), 0, 2, opts()), ClusterError);
}

u16 free_tcp_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

TEST(TcpBootstrap, ThreeNodesOverLoopback) {
  u16 port = free_tcp_port();
  std::string text = "# test cluster\n127.0.0.1:" + std::to_string(port) +
                     "\nlocalhost:1\n  localhost:2   # third\n";
  ClusterFile f = ClusterFile::parse(text, "test.txt");
  auto out = run_all(3, [&](NodeId r) { return std::make_unique<TcpBootstrap>(f, r, opts()); });
  expect_same_tables(out);
}

TEST(TcpBootstrap, RankOutsideTheFileIsAnError) {
  ClusterFile f = ClusterFile::parse("a:1\nb:2\n", "c.txt");
  EXPECT_THROW(TcpBootstrap(f, 2, opts()), ClusterError);
}

TEST(InProcessBootstrap, RefusesDifferentVersions) {
  auto rv = InProcessBootstrap::make_rendezvous(2);
  auto out = run_all(2, [&](NodeId r) {
    return std::make_unique<InProcessBootstrap>(rv, r, opts(r == 1 ? "v9" : "v1"));
  });
  EXPECT_NE(out[0].error.find("dvmm version 'v9'"), std::string::npos) << out[0].error;
  EXPECT_NE(out[1].error.find("dvmm version 'v9'"), std::string::npos) << out[1].error;
}

TEST(ClusterFile, BothStyles) {
  ClusterFile a = ClusterFile::parse("h0:7000\n[::1]:7001\n", "x");
  ASSERT_EQ(a.nodes.size(), 2u);
  EXPECT_EQ(a.nodes[0].host, "h0");
  EXPECT_EQ(a.nodes[0].port, 7000);
  EXPECT_EQ(a.nodes[1].host, "::1");
  ClusterFile b = ClusterFile::parse("1 hostb 9001\n0 hosta 9000\n", "y");
  ASSERT_EQ(b.nodes.size(), 2u);
  EXPECT_EQ(b.nodes[0].host, "hosta");
  EXPECT_EQ(b.nodes[1].port, 9001);
}

TEST(ClusterFile, ErrorsNameTheLine) {
  auto err = [](const std::string& text) {
    try {
      ClusterFile::parse(text, "c.txt");
    } catch (const ClusterError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err("h:1\nnoport\n"),
            "c.txt:2: expected 'HOST:PORT' or 'RANK HOST PORT', got 'noport'");
  EXPECT_EQ(err("h:99999\n"), "c.txt:1: bad port '99999'");
  EXPECT_EQ(err("0 a 1\n0 b 2\n"), "c.txt:2: rank 0 listed twice");
  EXPECT_EQ(err("0 a 1\n2 b 2\n"), "c.txt: rank 1 is missing");
  EXPECT_EQ(err("# nothing\n"), "c.txt: lists no nodes");
  EXPECT_EQ(err("h:1\n1 a 2\n"), "c.txt:2: mixes 'RANK HOST PORT' with 'HOST:PORT' lines");
  EXPECT_NE(err("0 a 1 extra\n").find("c.txt:1:"), std::string::npos);
}

TEST(LaunchRank, CommandLineThenSlurmThenMpi) {
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
  unsetenv("OMPI_COMM_WORLD_RANK");
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMI_RANK");
  unsetenv("PMI_SIZE");
  unsetenv("PMIX_RANK");
  EXPECT_THROW(resolve_launch_rank(std::nullopt), ClusterError);
  setenv("PMI_RANK", "2", 1);
  setenv("PMI_SIZE", "4", 1);
  auto r = resolve_launch_rank(std::nullopt);
  EXPECT_EQ(r.rank, 2);
  EXPECT_EQ(r.size, 4u);
  EXPECT_EQ(r.source, "PMI_RANK");
  setenv("SLURM_PROCID", "3", 1);
  r = resolve_launch_rank(std::nullopt);
  EXPECT_EQ(r.rank, 3);
  EXPECT_EQ(r.source, "SLURM_PROCID");
  EXPECT_FALSE(r.size);
  r = resolve_launch_rank(1u);
  EXPECT_EQ(r.rank, 1);
  EXPECT_EQ(r.source, "--rank");
  setenv("SLURM_PROCID", "x1", 1);
  try {
    resolve_launch_rank(std::nullopt);
    FAIL();
  } catch (const ClusterError& e) {
    EXPECT_EQ(std::string(e.what()),
              "environment variable SLURM_PROCID='x1' is not a valid number");
  }
  unsetenv("SLURM_PROCID");
  unsetenv("PMI_RANK");
  unsetenv("PMI_SIZE");
}

TEST(DescriptionHash, StableFnv1a) {
  EXPECT_EQ(description_hash({}), 0xcbf29ce484222325ull);
  const u8 a[1] = {'a'};
  EXPECT_EQ(description_hash(a), 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace dvmm::cluster
