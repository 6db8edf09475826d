// dvmm_baremetal: runs a bare-metal S-mode test program on the cpu layer with a minimal
// monitor, and reports pass or fail.
//
//   dvmm_baremetal [--harts N] [--timeout SECONDS] [--ram MIB] [--verbose] PROGRAM
//
// PROGRAM is an ELF64 (its PT_LOAD segments are loaded at their physical addresses) or a
// flat binary (loaded at the RAM base, 0x80000000, and entered there). Hart 0 starts at the
// entry in S-mode with a0 = 0 and a1 = 0x64766d6d ('dvmm', so a program can tell it runs
// here); the other harts wait for SBI HSM hart_start. Each hart runs on its own thread.
//
// The monitor implements: legacy console putchar (eid 1) and getchar (2), legacy set_timer
// (0) and shutdown (8), BASE, TIME, IPI, RFENCE, HSM, SRST (shutdown: reason 0 passes,
// anything else fails) and DBCN writes; and the test-exit call eid 0x0A000000 with
// a0 = exit code (0 passes). Any MMIO access, page-not-present or intercept exit fails the
// run, as does the timeout. Exit status: 0 pass, 1 fail, 2 timeout, 3 usage / load error.
#include <elf.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "cpu/time_source.hpp"
#include "memory/guest_ram.hpp"

namespace {

using namespace dvmm;
using cpu::Hart;

constexpr Gpa kRamBase = 0x80000000;
constexpr u64 kDvmmMagic = 0x64766d6d;

constexpr u64 kEidLegacySetTimer = 0;
constexpr u64 kEidLegacyPutchar = 1;
constexpr u64 kEidLegacyGetchar = 2;
constexpr u64 kEidLegacyShutdown = 8;
constexpr u64 kEidBase = 0x10;
constexpr u64 kEidTime = 0x54494D45;
constexpr u64 kEidIpi = 0x735049;
constexpr u64 kEidRfence = 0x52464E43;
constexpr u64 kEidHsm = 0x48534D;
constexpr u64 kEidSrst = 0x53525354;
constexpr u64 kEidDbcn = 0x4442434E;
constexpr u64 kEidTestExit = 0x0A000000;

constexpr i64 kSbiSuccess = 0;
constexpr i64 kSbiErrNotSupported = -2;
constexpr i64 kSbiErrInvalidParam = -3;
constexpr i64 kSbiErrAlreadyAvailable = -6;

enum class HartState { kStopped, kStartPending, kStarted };

struct HartSlot {
  std::unique_ptr<Hart> hart;
  std::mutex mutex;
  std::condition_variable cv;
  HartState state = HartState::kStopped;  // guarded by mutex
  u64 start_pc = 0;
  u64 opaque = 0;
  bool wake = false;
  std::thread thread;
};

struct Options {
  std::string program;
  unsigned harts = 1;
  double timeout_s = 60;
  u64 ram_mib = 64;
  bool verbose = false;
};

class Monitor {
 public:
  Monitor(const Options& opt) : opt_(opt), ram_(kRamBase, opt.ram_mib << 20), time_(10'000'000) {
    slots_.reserve(opt.harts);
    for (unsigned i = 0; i < opt.harts; ++i) {
      auto slot = std::make_unique<HartSlot>();
      slot->hart = std::make_unique<Hart>(i, ram_, time_);
      HartSlot* s = slot.get();
      slot->hart->set_wakeup([s] {
        {
          std::lock_guard lock(s->mutex);
          s->wake = true;
        }
        s->cv.notify_all();
      });
      slots_.push_back(std::move(slot));
    }
  }

  bool load(u64* entry) {
    std::ifstream in(opt_.program, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "dvmm_baremetal: cannot open %s\n", opt_.program.c_str());
      return false;
    }
    std::vector<u8> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.size() >= sizeof(Elf64_Ehdr) && std::memcmp(data.data(), ELFMAG, SELFMAG) == 0) {
      Elf64_Ehdr eh;
      std::memcpy(&eh, data.data(), sizeof eh);
      if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_RISCV) {
        std::fprintf(stderr, "dvmm_baremetal: not a RISC-V ELF64 file\n");
        return false;
      }
      for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        const u64 off = eh.e_phoff + u64{i} * eh.e_phentsize;
        if (off + sizeof ph > data.size()) return false;
        std::memcpy(&ph, data.data() + off, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_offset + ph.p_filesz > data.size() || !ram_.contains(ph.p_paddr, ph.p_memsz)) {
          std::fprintf(stderr, "dvmm_baremetal: segment %u at 0x%llx does not fit in RAM\n", i,
                       static_cast<unsigned long long>(ph.p_paddr));
          return false;
        }
        ram_.write(ph.p_paddr, data.data() + ph.p_offset, ph.p_filesz);
      }
      *entry = eh.e_entry;
      return true;
    }
    if (!ram_.write(kRamBase, data.data(), data.size())) {
      std::fprintf(stderr, "dvmm_baremetal: image too large\n");
      return false;
    }
    *entry = kRamBase;
    return true;
  }

  int run(u64 entry) {
    {
      std::lock_guard lock(slots_[0]->mutex);
      slots_[0]->state = HartState::kStartPending;
      slots_[0]->start_pc = entry;
      slots_[0]->opaque = kDvmmMagic;
    }
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < slots_.size(); ++i) {
      slots_[i]->thread = std::thread([this, i] { hart_thread(i); });
    }
    {
      std::unique_lock lock(done_mutex_);
      const bool finished = done_cv_.wait_for(
          lock, std::chrono::duration<double>(opt_.timeout_s), [this] { return result_ >= 0; });
      if (!finished) {
        result_ = 2;
        reason_ = "timeout after " + std::to_string(opt_.timeout_s) + " s";
      }
    }
    stop_all();
    // Give the hart threads a moment to leave run(); a hart stuck inside run() must not
    // hang the test.
    const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (threads_running_.load() > 0 && std::chrono::steady_clock::now() < grace) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    u64 instret = 0;
    for (auto& s : slots_) instret += s->hart->instret();
    std::fflush(stdout);
    if (result_ == 0) {
      std::printf("dvmm_baremetal: PASS (%s, %.3f s, %llu instructions)\n", opt_.program.c_str(),
                  secs, static_cast<unsigned long long>(instret));
    } else {
      std::printf("dvmm_baremetal: FAIL (%s): %s\n", opt_.program.c_str(), reason_.c_str());
    }
    std::fflush(stdout);
    if (threads_running_.load() > 0) {
      std::printf("dvmm_baremetal: a hart did not stop after kick()\n");
      std::fflush(stdout);
      std::_Exit(result_ == 0 ? 1 : result_);
    }
    for (auto& s : slots_) s->thread.join();
    return result_;
  }

 private:
  void finish(int code, std::string reason) {
    {
      std::lock_guard lock(done_mutex_);
      if (result_ < 0) {
        result_ = code;
        reason_ = std::move(reason);
      }
    }
    done_cv_.notify_all();
  }
  bool finished() {
    std::lock_guard lock(done_mutex_);
    return result_ >= 0;
  }
  void stop_all() {
    stopping_.store(true);
    for (auto& s : slots_) {
      s->hart->kick();
      {
        std::lock_guard lock(s->mutex);
        s->wake = true;
      }
      s->cv.notify_all();
    }
  }

  void putc(u8 c) {
    std::lock_guard lock(out_mutex_);
    std::fputc(c, stdout);
    if (c == '\n') std::fflush(stdout);
  }

  void hart_thread(unsigned id) {
    threads_running_.fetch_add(1);
    HartSlot& slot = *slots_[id];
    Hart& hart = *slot.hart;
    while (!stopping_.load()) {
      // Wait for HSM start.
      {
        std::unique_lock lock(slot.mutex);
        slot.cv.wait(lock, [&] { return stopping_.load() || slot.state == HartState::kStartPending; });
        if (stopping_.load()) break;
        hart.reset(slot.start_pc, id, slot.opaque);
        slot.state = HartState::kStarted;
      }
      run_hart(id);
      std::lock_guard lock(slot.mutex);
      if (slot.state == HartState::kStarted) slot.state = HartState::kStopped;
    }
    threads_running_.fetch_sub(1);
  }

  // Runs one started hart until it stops (HSM hart_stop) or the run ends.
  void run_hart(unsigned id) {
    HartSlot& slot = *slots_[id];
    Hart& hart = *slot.hart;
    while (!stopping_.load()) {
      cpu::Exit exit = hart.run();
      if (auto* sbi = std::get_if<cpu::ExitSbiCall>(&exit)) {
        if (!handle_sbi(id, *sbi)) return;  // hart stopped
      } else if (std::holds_alternative<cpu::ExitWfi>(exit)) {
        wait_for_interrupt(slot);
      } else if (std::holds_alternative<cpu::ExitKicked>(exit) ||
                 std::holds_alternative<cpu::ExitBudgetExhausted>(exit)) {
        continue;
      } else {
        char buf[256];
        describe(exit, hart, buf, sizeof buf);
        finish(1, buf);
        return;
      }
    }
  }

  static void describe(const cpu::Exit& exit, const Hart& hart, char* buf, std::size_t n) {
    const auto pc = static_cast<unsigned long long>(hart.pc());
    if (auto* r = std::get_if<cpu::ExitMmioRead>(&exit)) {
      std::snprintf(buf, n, "hart %u: MMIO read of %u bytes at 0x%llx (pc 0x%llx)", hart.id(),
                    unsigned{r->size}, static_cast<unsigned long long>(r->gpa), pc);
    } else if (auto* w = std::get_if<cpu::ExitMmioWrite>(&exit)) {
      std::snprintf(buf, n, "hart %u: MMIO write of %u bytes at 0x%llx value 0x%llx (pc 0x%llx)",
                    hart.id(), unsigned{w->size}, static_cast<unsigned long long>(w->gpa),
                    static_cast<unsigned long long>(w->value), pc);
    } else if (auto* e = std::get_if<cpu::ExitException>(&exit)) {
      std::snprintf(buf, n, "hart %u: exception exit cause %llu tval 0x%llx pc 0x%llx", hart.id(),
                    static_cast<unsigned long long>(e->cause),
                    static_cast<unsigned long long>(e->tval),
                    static_cast<unsigned long long>(e->pc));
    } else if (auto* p = std::get_if<cpu::ExitPageNotPresent>(&exit)) {
      std::snprintf(buf, n, "hart %u: page not present at 0x%llx (pc 0x%llx)", hart.id(),
                    static_cast<unsigned long long>(p->gpa), pc);
    } else {
      std::snprintf(buf, n, "hart %u: unexpected exit %s (pc 0x%llx)", hart.id(),
                    cpu::exit_name(exit), pc);
    }
  }

  void wait_for_interrupt(HartSlot& slot) {
    Hart& hart = *slot.hart;
    while (!stopping_.load()) {
      hart.service_requests();
      if (hart.interrupt_pending()) return;
      const u64 now = time_.now();
      const u64 deadline = hart.timer_deadline();
      u64 wait_ns = 10'000'000;  // re-check at least every 10 ms
      if (deadline > now) {
        const u64 ticks = deadline - now;
        if (ticks < wait_ns / 100) wait_ns = ticks * 100;  // 10 MHz: 100 ns per tick
      } else {
        wait_ns = 50'000;  // timer already due but not enabled in sie: poll gently
      }
      std::unique_lock lock(slot.mutex);
      slot.cv.wait_for(lock, std::chrono::nanoseconds(wait_ns),
                       [&] { return slot.wake || stopping_.load(); });
      slot.wake = false;
    }
  }

  // Targets of an SBI hart mask; false when one is out of range.
  bool targets(u64 mask, u64 base, std::vector<unsigned>& out) {
    out.clear();
    if (base == ~u64{0}) {
      for (unsigned i = 0; i < slots_.size(); ++i) out.push_back(i);
      return true;
    }
    for (unsigned bit = 0; bit < 64; ++bit) {
      if (!(mask >> bit & 1)) continue;
      const u64 id = base + bit;
      if (id >= slots_.size()) return false;
      out.push_back(static_cast<unsigned>(id));
    }
    return true;
  }

  bool hart_started(unsigned id) {
    std::lock_guard lock(slots_[id]->mutex);
    return slots_[id]->state == HartState::kStarted;
  }

  // Returns false when the calling hart stopped itself.
  bool handle_sbi(unsigned id, const cpu::ExitSbiCall& c) {
    Hart& hart = *slots_[id]->hart;
    const u64 a0 = c.args[0], a1 = c.args[1], a2 = c.args[2];
    if (opt_.verbose) {
      std::fprintf(stderr, "[hart %u] sbi eid 0x%llx fid %llu a0 0x%llx a1 0x%llx\n", id,
                   static_cast<unsigned long long>(c.eid), static_cast<unsigned long long>(c.fid),
                   static_cast<unsigned long long>(a0), static_cast<unsigned long long>(a1));
    }
    auto legacy = [&](i64 ret) {  // v0.1 calls return only a0
      hart.set_sbi_result(ret, 0);
      hart.set_x(11, a1);
    };
    std::vector<unsigned> ids;
    switch (c.eid) {
      case kEidLegacyPutchar:
        putc(static_cast<u8>(a0));
        legacy(0);
        return true;
      case kEidLegacyGetchar:
        legacy(-1);
        return true;
      case kEidLegacySetTimer:
        hart.debug_write_csr(0x14d, a0);
        legacy(0);
        return true;
      case kEidLegacyShutdown:
        finish(0, "legacy shutdown");
        legacy(0);
        return true;
      case kEidTestExit:
        finish(a0 == 0 ? 0 : 1, "test exit code " + std::to_string(a0));
        hart.set_sbi_result(0, 0);
        return true;
      case kEidSrst:
        if (c.fid == 0) {
          finish(a1 == 0 ? 0 : 1, "SRST type " + std::to_string(a0) + " reason " + std::to_string(a1));
          hart.set_sbi_result(0, 0);
        } else {
          hart.set_sbi_result(kSbiErrNotSupported, 0);
        }
        return true;
      case kEidBase:
        switch (c.fid) {
          case 0: hart.set_sbi_result(0, 0x02000000); break;  // SBI 2.0
          case 1: hart.set_sbi_result(0, 0xd0); break;        // implementation id
          case 2: hart.set_sbi_result(0, 1); break;
          case 3: {
            const bool known = a0 == kEidTime || a0 == kEidIpi || a0 == kEidRfence ||
                               a0 == kEidHsm || a0 == kEidSrst || a0 == kEidDbcn ||
                               a0 == kEidLegacyPutchar || a0 == kEidLegacyGetchar ||
                               a0 == kEidLegacySetTimer || a0 == kEidLegacyShutdown;
            hart.set_sbi_result(0, known ? 1 : 0);
            break;
          }
          case 4: case 5: case 6: hart.set_sbi_result(0, 0); break;
          default: hart.set_sbi_result(kSbiErrNotSupported, 0);
        }
        return true;
      case kEidTime:
        if (c.fid == 0) {
          hart.debug_write_csr(0x14d, a0);
          hart.set_sbi_result(0, 0);
        } else {
          hart.set_sbi_result(kSbiErrNotSupported, 0);
        }
        return true;
      case kEidIpi:
        if (c.fid != 0) {
          hart.set_sbi_result(kSbiErrNotSupported, 0);
        } else if (!targets(a0, a1, ids)) {
          hart.set_sbi_result(kSbiErrInvalidParam, 0);
        } else {
          for (unsigned t : ids) slots_[t]->hart->raise_software_interrupt();
          hart.set_sbi_result(0, 0);
        }
        return true;
      case kEidRfence: {
        if (c.fid > 2 || !targets(a0, a1, ids)) {
          hart.set_sbi_result(c.fid > 2 ? kSbiErrNotSupported : kSbiErrInvalidParam, 0);
          return true;
        }
        std::vector<std::pair<unsigned, u64>> tickets;
        for (unsigned t : ids) {
          if (t != id && !hart_started(t)) continue;
          tickets.emplace_back(t, slots_[t]->hart->request_flush());
        }
        for (auto& [t, ticket] : tickets) {
          while (!slots_[t]->hart->flush_done(ticket) && !stopping_.load()) {
            hart.service_requests();  // also our own request, and requests to us
            if (t != id && !hart_started(t)) break;
            std::this_thread::yield();
          }
        }
        hart.set_sbi_result(0, 0);
        return true;
      }
      case kEidHsm:
        switch (c.fid) {
          case 0: {  // hart_start(hartid, start_addr, opaque)
            if (a0 >= slots_.size()) {
              hart.set_sbi_result(kSbiErrInvalidParam, 0);
              return true;
            }
            HartSlot& t = *slots_[a0];
            {
              std::lock_guard lock(t.mutex);
              if (t.state != HartState::kStopped) {
                hart.set_sbi_result(kSbiErrAlreadyAvailable, 0);
                return true;
              }
              t.state = HartState::kStartPending;
              t.start_pc = a1;
              t.opaque = a2;
            }
            t.cv.notify_all();
            hart.set_sbi_result(0, 0);
            return true;
          }
          case 1: {  // hart_stop
            std::lock_guard lock(slots_[id]->mutex);
            slots_[id]->state = HartState::kStopped;
            return false;
          }
          case 2: {  // hart_get_status
            if (a0 >= slots_.size()) {
              hart.set_sbi_result(kSbiErrInvalidParam, 0);
              return true;
            }
            std::lock_guard lock(slots_[a0]->mutex);
            const HartState s = slots_[a0]->state;
            hart.set_sbi_result(0, s == HartState::kStarted ? 0 : s == HartState::kStopped ? 1 : 2);
            return true;
          }
          default:
            hart.set_sbi_result(kSbiErrNotSupported, 0);
            return true;
        }
      case kEidDbcn:
        if (c.fid == 0) {  // write(num_bytes, base_lo, base_hi)
          std::vector<u8> bytes(a0);
          if (a2 != 0 || !ram_.read(a1, bytes.data(), a0)) {
            hart.set_sbi_result(kSbiErrInvalidParam, 0);
            return true;
          }
          for (u8 b : bytes) putc(b);
          hart.set_sbi_result(0, a0);
        } else if (c.fid == 2) {
          putc(static_cast<u8>(a0));
          hart.set_sbi_result(0, 0);
        } else {
          hart.set_sbi_result(kSbiErrNotSupported, 0);
        }
        return true;
      default:
        if (opt_.verbose) std::fprintf(stderr, "[hart %u] unsupported SBI call\n", id);
        hart.set_sbi_result(kSbiErrNotSupported, 0);
        return true;
    }
  }

  Options opt_;
  memory::GuestRam ram_;
  cpu::HostMonotonicTime time_;
  std::vector<std::unique_ptr<HartSlot>> slots_;
  std::mutex out_mutex_;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
  int result_ = -1;  // guarded by done_mutex_
  std::string reason_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> threads_running_{0};
};

int usage() {
  std::fprintf(stderr,
               "usage: dvmm_baremetal [--harts N] [--timeout SECONDS] [--ram MIB] [--verbose] "
               "PROGRAM\n");
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--harts") {
      const char* v = value();
      if (!v) return usage();
      opt.harts = static_cast<unsigned>(std::strtoul(v, nullptr, 0));
    } else if (a == "--timeout") {
      const char* v = value();
      if (!v) return usage();
      opt.timeout_s = std::strtod(v, nullptr);
    } else if (a == "--ram") {
      const char* v = value();
      if (!v) return usage();
      opt.ram_mib = std::strtoull(v, nullptr, 0);
    } else if (a == "--verbose" || a == "-v") {
      opt.verbose = true;
    } else if (!a.empty() && a[0] == '-') {
      return usage();
    } else {
      opt.program = a;
    }
  }
  if (opt.program.empty() || opt.harts == 0 || opt.harts > 64 || opt.ram_mib == 0) return usage();
  Monitor monitor(opt);
  u64 entry = 0;
  if (!monitor.load(&entry)) return 3;
  return monitor.run(entry);
}
