// Guest-physical memory windows (memory::GuestRam::add_window, the inter-VM shared memory):
// loads, stores, AMOs and LR/SC of the guest reach the host buffer through bare and Sv39
// translations, fetching from a window is an instruction access fault, stores to a window
// leave RAM's code tracking alone, and add_window refuses bad ranges.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;
using memory::AccessType;
using memory::MemoryWindow;

constexpr u64 kV = 1, kR = 2, kW = 4, kX = 8, kA = 64, kD = 128;
constexpr u64 kSv39 = u64{8} << 60;
constexpr u64 kInsnAccessFault = 1, kStoreAccessFault = 7;

// Host memory for a window, page aligned like the mmap of a group's shared memory.
class HostBuffer {
 public:
  explicit HostBuffer(u64 size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<u8*>(p);
  }
  ~HostBuffer() { ::munmap(data_, size_); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  u8* data() const { return data_; }
  u64 get64(u64 at) const {
    u64 v;
    std::memcpy(&v, data_ + at, 8);
    return v;
  }
  void set64(u64 at, u64 v) { std::memcpy(data_ + at, &v, 8); }

 private:
  u64 size_;
  u8* data_;
};

class MemoryWindowTest : public HartTest {
 protected:
  static constexpr Gpa kWindow = 0x200'0000'0000;
  static constexpr u64 kWindowSize = 2 * kPageSize;
  // A second window right after RAM, for accesses that straddle the two.
  static constexpr Gpa kAfterRam = kBase + kRamSize;

  void SetUp() override {
    ram_.add_window({kWindow, kWindowSize, window_.data()});
    ram_.add_window({kAfterRam, kPageSize, after_ram_.data()});
  }

  // Sv39 tables in RAM: RAM identity-mapped by a gigapage (code, data, trap vector), plus
  // whatever map() adds. Turns paging on.
  static constexpr Gpa kTables = kBase + 0x300000;
  Gpa root_ = 0;
  Gpa next_table_ = kTables;
  Gpa new_table() {
    const Gpa t = next_table_;
    next_table_ += kPageSize;
    for (u64 i = 0; i < 512; ++i) write64(t + 8 * i, 0);
    return t;
  }
  void map(u64 va, Gpa pa, u64 flags, int leaf_level = 0) {
    Gpa table = root_;
    for (int level = 2; level > leaf_level; --level) {
      const Gpa e = table + 8 * ((va >> (12 + 9 * level)) & 511);
      u64 pte = read64(e);
      if (!(pte & kV)) {
        pte = ((new_table() >> 12) << 10) | kV;
        write64(e, pte);
      }
      table = (pte >> 10) << 12;
    }
    write64(table + 8 * ((va >> (12 + 9 * leaf_level)) & 511), ((pa >> 12) << 10) | flags | kV);
  }
  void enable_sv39() {
    root_ = new_table();
    map(kBase, kBase, kR | kW | kX | kA | kD, 2);
    ASSERT_TRUE(hart_.debug_write_csr(kSatp, kSv39 | (root_ >> 12)));
  }

  // Stores of every width at base+0.. (a2 holds the value), then loads of every width of
  // base+16 (preset by the host) into a3..t2.
  static Code every_width(u64 base) {
    Code c;
    c.li(a1, base);
    c.i(sd(a2, a1, 0)).i(sw(a2, a1, 8)).i(sh(a2, a1, 12)).i(sb(a2, a1, 14));
    c.i(ld(a3, a1, 16)).i(lw(a4, a1, 16)).i(lwu(a5, a1, 16)).i(lh(a6, a1, 16));
    c.i(lhu(t0, a1, 16)).i(lb(t1, a1, 16)).i(lbu(t2, a1, 16));
    c.i(ecall());
    return c;
  }
  void check_every_width(u64 buffer_offset) {
    EXPECT_EQ(window_.get64(buffer_offset), 0x0123456789abcdefu);
    u32 w;
    std::memcpy(&w, window_.data() + buffer_offset + 8, 4);
    EXPECT_EQ(w, 0x89abcdefu);
    u16 h;
    std::memcpy(&h, window_.data() + buffer_offset + 12, 2);
    EXPECT_EQ(h, 0xcdefu);
    EXPECT_EQ(window_.data()[buffer_offset + 14], 0xefu);
    EXPECT_EQ(window_.data()[buffer_offset + 15], 0u) << "nothing beyond the byte";
    EXPECT_EQ(x(a3), 0xf0e0d0c0b0a09080u);
    EXPECT_EQ(x(a4), 0xffffffffb0a09080u);
    EXPECT_EQ(x(a5), 0xb0a09080u);
    EXPECT_EQ(x(a6), 0xffffffffffff9080u);
    EXPECT_EQ(x(t0), 0x9080u);
    EXPECT_EQ(x(t1), 0xffffffffffffff80u);
    EXPECT_EQ(x(t2), 0x80u);
  }

  HostBuffer window_{kWindowSize};
  HostBuffer after_ram_{kPageSize};
};

TEST_F(MemoryWindowTest, EveryWidthThroughBareTranslation) {
  window_.set64(16, 0xf0e0d0c0b0a09080);
  exec(every_width(kWindow), {{a2, 0x0123456789abcdef}});
  check_every_width(0);
  // The last bytes of the window's second page.
  window_.set64(kWindowSize - 8, 0xf0e0d0c0b0a09080);
  exec(every_width(kWindow + kWindowSize - 24), {{a2, 0x0123456789abcdef}});
  check_every_width(kWindowSize - 24);
}

TEST_F(MemoryWindowTest, EveryWidthThroughSv39) {
  constexpr u64 kVa = 0x4000'0000;
  load(every_width(kVa + kPageSize + 0x100));
  enable_sv39();
  map(kVa, kWindow, kR | kW | kA | kD);
  map(kVa + kPageSize, kWindow + kPageSize, kR | kW | kA | kD);
  window_.set64(kPageSize + 0x100 + 16, 0xf0e0d0c0b0a09080);
  hart_.set_x(a2, 0x0123456789abcdef);
  run_to_ecall();
  check_every_width(kPageSize + 0x100);
  EXPECT_EQ(hart_.debug_translate(kVa + 0x10, AccessType::kRead), kWindow + 0x10);
}

TEST_F(MemoryWindowTest, AGigapageOverTheWindow) {
  constexpr u64 kVa = 0xc000'0000;
  load(every_width(kVa + kPageSize));
  enable_sv39();
  map(kVa, kWindow, kR | kW | kA | kD, 2);  // 0x200'0000'0000 is 1 GiB aligned
  window_.set64(kPageSize + 16, 0xf0e0d0c0b0a09080);
  hart_.set_x(a2, 0x0123456789abcdef);
  run_to_ecall();
  check_every_width(kPageSize);
}

TEST_F(MemoryWindowTest, AccessesThatCrossAPage) {
  // Within the window, and from the last page of RAM into the window after it.
  exec(Code{}
           .li(a1, kWindow + kPageSize - 4)
           .i(sd(a2, a1, 0))
           .i(ld(a3, a1, 0))
           .li(a4, kAfterRam - 2)
           .i(sw(a2, a4, 0))
           .i(lw(a5, a4, 0)),
       {{a2, 0x1122334455667788}});
  EXPECT_EQ(window_.get64(kPageSize - 4), 0x1122334455667788u);
  EXPECT_EQ(x(a3), 0x1122334455667788u);
  EXPECT_EQ(read32(kAfterRam - 4) >> 16, 0x7788u);
  EXPECT_EQ(after_ram_.data()[0], 0x66u);
  EXPECT_EQ(after_ram_.data()[1], 0x55u);
  EXPECT_EQ(x(a5), 0x55667788u);
  // Off the end of a window: nothing there, an access fault.
  load(Code{}.li(a1, kWindow + kWindowSize - 4).i(sd(a2, a1, 0)).i(ecall()));
  run_to_trap(kStoreAccessFault);
}

TEST_F(MemoryWindowTest, AmoAndLrScOnTheWindow) {
  window_.set64(0x40, 1000);
  window_.set64(0x48, 7);
  exec(Code{}
           .li(a1, kWindow + 0x40)
           .i(amo(kAmoAdd, true, a0, a1, a2))    // amoadd.d: a0 = 1000, mem = 1005
           .i(amo(kAmoSwap, false, a3, a1, a4))  // amoswap.w on the low word
           .i(addi(a5, a1, 8))
           .i(lr_d(t0, a5))
           .i(addi(t0, t0, 1))
           .i(sc_d(t1, a5, t0))   // t1 = 0: stored 8
           .i(sc_d(t2, a5, t0)),  // no reservation: t2 != 0
       {{a2, 5}, {a4, 0xdead}});
  EXPECT_EQ(x(a0), 1000u);
  EXPECT_EQ(x(a3), 1005u);
  EXPECT_EQ(window_.get64(0x40), 0xdeadu);
  EXPECT_EQ(x(t1), 0u);
  EXPECT_NE(x(t2), 0u);
  EXPECT_EQ(window_.get64(0x48), 8u);
}

TEST_F(MemoryWindowTest, ExecutingFromTheWindowIsAnAccessFault) {
  // Valid code there, so executing it would show.
  Code there{addi(a0, 0, 42), ecall()};
  std::memcpy(window_.data(), there.bytes().data(), there.size());
  load(Code{}.li(a1, kWindow).i(jalr(0, a1, 0)));
  run_to_trap(kInsnAccessFault);
  EXPECT_EQ(csr(kStval), kWindow);
  EXPECT_EQ(csr(kSepc), kWindow);
  EXPECT_NE(x(a0), 42u);

  // Through Sv39 with execute permission: still a fault (a window is data only).
  constexpr u64 kVa = 0x4000'0000;
  enable_sv39();
  map(kVa, kWindow, kR | kW | kX | kA | kD);
  load(Code{}.li(a1, kVa).i(jalr(0, a1, 0)));
  ASSERT_TRUE(hart_.debug_write_csr(kSatp, kSv39 | (root_ >> 12)));
  run_to_trap(kInsnAccessFault);
  EXPECT_EQ(csr(kStval), kVa);
  EXPECT_NE(x(a0), 42u);
  // The data accesses to that page are fine.
  load(Code{}.li(a1, kVa).i(ld(a0, a1, 0)).i(ecall()));
  ASSERT_TRUE(hart_.debug_write_csr(kSatp, kSv39 | (root_ >> 12)));
  run_to_ecall();
  EXPECT_EQ(x(a0), window_.get64(0));
}

// Stores to the window go through TLB entries of their own page index, whose code flag is
// never set: the decoded page of the running code (RAM page 0) stays valid.
TEST_F(MemoryWindowTest, StoresToTheWindowLeaveCodeTrackingAlone) {
  constexpr u64 kIterations = 2000;
  Code loop;
  loop.li(a1, kWindow).li(a0, kIterations);
  // loop:
  loop.i(sd(a0, a1, 0))
      .i(sb(a0, a1, 9))
      .i(sw(a0, a1, 0x7f0))
      .i(amo(kAmoAdd, true, zero, a1, a0))
      .i(addi(a0, a0, -1))
      .i(bne(a0, zero, -20))
      .i(ecall());
  load(loop);
  const u64 code_page = ram_.page_index(kBase);
  const u32 generation = ram_.code_generation(code_page);
  const u64 decoded_before = hart_.counters().decoded_pages.load();
  run_to_ecall();
  EXPECT_EQ(window_.get64(0) & 0xff, 1u + 1u);  // sd 1, then amoadd 1
  EXPECT_TRUE(ram_.is_code(code_page));
  EXPECT_EQ(ram_.code_generation(code_page), generation) << "a window store hit RAM page 0";
  EXPECT_FALSE(ram_.is_code(ram_.window_page_index()));
  const u64 decoded = hart_.counters().decoded_pages.load() - decoded_before;
  EXPECT_LE(decoded, 1u) << "the code page was decoded again";
  // Run it again: the decoded page is still good.
  hart_.set_pc(kBase);
  run_to_ecall();
  EXPECT_EQ(hart_.counters().decoded_pages.load() - decoded_before, decoded);
  EXPECT_EQ(ram_.code_generation(code_page), generation);
  for (u64 page = 0; page < ram_.page_count(); ++page) {
    if (ram_.is_code(page)) {
      EXPECT_EQ(ram_.code_generation(page), 0u) << page;
    }
  }
  // A store to the code page itself still invalidates it (the tracking works).
  load(Code{}.li(a1, kBase + 0x800).i(sd(a1, a1, 0)).i(ecall()));
  const u32 before_store = ram_.code_generation(code_page);
  run_to_ecall();
  EXPECT_NE(ram_.code_generation(code_page), before_store);
}

// ------------------------------------------------------------------ add_window

TEST(GuestRamWindows, AddWindowRefusesBadRanges) {
  constexpr Gpa kBase = 0x8000'0000;
  constexpr u64 kSize = 4 << 20;
  memory::GuestRam ram(kBase, kSize);
  HostBuffer buffer(4 * kPageSize);
  u8* host = buffer.data();
  const auto refused = [&](Gpa base, u64 size, u8* h, const char* why) {
    try {
      ram.add_window({base, size, h});
      ADD_FAILURE() << "accepted " << std::hex << base << "+" << size;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  // Not page aligned, empty, no memory.
  refused(0x200'0000'0000 + 8, kPageSize, host, "page-aligned");
  refused(0x200'0000'0000, kPageSize + 1, host, "page-aligned");
  refused(0x200'0000'0000, 0, host, "page-aligned");
  refused(0x200'0000'0000, kPageSize, nullptr, "page-aligned");
  // Over RAM: inside, across either end, around it.
  refused(kBase, kPageSize, host, "overlaps guest RAM");
  refused(kBase + kSize - kPageSize, kPageSize, host, "overlaps guest RAM");
  refused(kBase - kPageSize, 2 * kPageSize, host, "overlaps guest RAM");
  refused(kBase + kSize - kPageSize, 2 * kPageSize, host, "overlaps guest RAM");
  refused(0, u64{1} << 40, host, "overlaps guest RAM");
  // Wrapping around the address space.
  refused(~u64{0} - kPageSize + 1, 2 * kPageSize, host, "");
  // Next to RAM is fine.
  ram.add_window({kBase - kPageSize, kPageSize, host});
  ram.add_window({kBase + kSize, kPageSize, host + kPageSize});
  // Over another window.
  const Gpa w = 0x200'0000'0000;
  ram.add_window({w, 2 * kPageSize, host});
  refused(w, 2 * kPageSize, host, "overlaps another window");
  refused(w + kPageSize, kPageSize, host, "overlaps another window");
  refused(w - kPageSize, 2 * kPageSize, host, "overlaps another window");
  refused(w - kPageSize, 4 * kPageSize, host, "overlaps another window");
  refused(kBase + kSize, kPageSize, host, "overlaps another window");
  ram.add_window({w + 2 * kPageSize, kPageSize, host});  // adjacent

  // window_for: first and last byte, and just outside.
  ASSERT_NE(ram.window_for(w), nullptr);
  EXPECT_EQ(ram.window_for(w)->base, w);
  EXPECT_EQ(ram.window_for(w + 2 * kPageSize - 1)->base, w);
  EXPECT_EQ(ram.window_for(w + 2 * kPageSize)->base, w + 2 * kPageSize);
  EXPECT_EQ(ram.window_for(w + 3 * kPageSize), nullptr);
  EXPECT_EQ(ram.window_for(w - 1), nullptr);
  EXPECT_EQ(ram.window_for(kBase + kSize)->host, host + kPageSize);
  EXPECT_EQ(ram.window_for(kBase), nullptr) << "RAM is not a window";
  EXPECT_FALSE(ram.contains(w));
}

}  // namespace
}  // namespace dvmm::test
