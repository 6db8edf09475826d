// dvmm_difftest: runs a static riscv64 Linux ELF made by tests/diff/gen.py on one hart and
// emulates the two system calls it uses, so that its output can be compared with
// qemu-riscv64's.
//
//   dvmm_difftest [--budget N] [--trace] PROGRAM.elf
//
// The program runs in S-mode with paging off (user-level instructions behave the same in
// S- and U-mode; in S-mode an ecall is an SBI exit, which is where the system calls are
// emulated): a7 = 64 write(fd, buf, len) copies guest memory to stdout, a7 = 93 / 94 exit
// ends the run with a0 as the exit status. Every guest exception exits (exception bitmap
// all ones) and is reported as an error, as are MMIO accesses and running out of budget.
// --trace single-steps and prints each pc to stderr.
//
// Exit status: the program's exit status; 101 exception, 102 budget, 103 other error.
#include <elf.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cpu/controls.hpp"
#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "cpu/time_source.hpp"
#include "memory/guest_ram.hpp"

namespace {

using namespace dvmm;

constexpr Gpa kRamBase = 0x80000000;
constexpr u64 kRamSize = 16 << 20;

bool load_elf(const std::string& path, memory::GuestRam& ram, u64* entry) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::vector<u8> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < sizeof(Elf64_Ehdr) || std::memcmp(data.data(), ELFMAG, SELFMAG) != 0) {
    return false;
  }
  Elf64_Ehdr eh;
  std::memcpy(&eh, data.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_RISCV) return false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    const u64 off = eh.e_phoff + u64{i} * eh.e_phentsize;
    if (off + sizeof ph > data.size()) return false;
    std::memcpy(&ph, data.data() + off, sizeof ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_offset + ph.p_filesz > data.size() || !ram.contains(ph.p_vaddr, ph.p_memsz)) {
      return false;
    }
    ram.write(ph.p_vaddr, data.data() + ph.p_offset, ph.p_filesz);
  }
  *entry = eh.e_entry;
  return true;
}

void write_all(int fd, const u8* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  u64 budget = 100'000'000;
  bool trace = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--budget" && i + 1 < argc) {
      budget = std::strtoull(argv[++i], nullptr, 0);
    } else if (a == "--trace") {
      trace = true;
    } else if (!a.empty() && a[0] != '-') {
      path = a;
    } else {
      std::fprintf(stderr, "usage: dvmm_difftest [--budget N] [--trace] PROGRAM.elf\n");
      return 103;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr, "usage: dvmm_difftest [--budget N] [--trace] PROGRAM.elf\n");
    return 103;
  }
  memory::GuestRam ram(kRamBase, kRamSize);
  u64 entry = 0;
  if (!load_elf(path, ram, &entry)) {
    std::fprintf(stderr, "dvmm_difftest: cannot load %s\n", path.c_str());
    return 103;
  }
  cpu::HostMonotonicTime time;
  cpu::Hart hart(0, ram, time);
  hart.reset(entry, 0, 0);
  hart.debug_write_csr(0x100, u64{1} << 13);  // sstatus.FS = Initial
  cpu::ExecControls controls;
  controls.exception_bitmap = 0xffffff & ~(u64{1} << 9);
  controls.single_step = trace;
  hart.set_controls(controls);

  u64 left = budget;
  while (true) {
    const u64 before = hart.instret();
    if (trace) std::fprintf(stderr, "pc %llx\n", static_cast<unsigned long long>(hart.pc()));
    cpu::Exit exit = hart.run(left);
    const u64 ran = hart.instret() - before;
    left = ran < left ? left - ran : 0;
    if (auto* c = std::get_if<cpu::ExitSbiCall>(&exit)) {
      if (c->eid == 64) {  // write(fd, buf, len)
        const u64 len = c->args[2];
        std::vector<u8> buf(len);
        if (!ram.read(c->args[1], buf.data(), len)) {
          std::fprintf(stderr, "dvmm_difftest: write from outside RAM\n");
          return 103;
        }
        write_all(c->args[0] == 2 ? 2 : 1, buf.data(), len);
        hart.set_sbi_result(static_cast<i64>(len), hart.x(11));
        continue;
      }
      if (c->eid == 93 || c->eid == 94) return static_cast<int>(c->args[0] & 0xff);
      std::fprintf(stderr, "dvmm_difftest: unsupported system call %llu\n",
                   static_cast<unsigned long long>(c->eid));
      return 103;
    }
    if (auto* e = std::get_if<cpu::ExitException>(&exit)) {
      std::fprintf(stderr, "dvmm_difftest: exception cause %llu tval 0x%llx at pc 0x%llx\n",
                   static_cast<unsigned long long>(e->cause),
                   static_cast<unsigned long long>(e->tval),
                   static_cast<unsigned long long>(e->pc));
      return 101;
    }
    if (std::holds_alternative<cpu::ExitSingleStep>(exit) ||
        std::holds_alternative<cpu::ExitKicked>(exit)) {
      if (left == 0) {
        std::fprintf(stderr, "dvmm_difftest: instruction budget exhausted\n");
        return 102;
      }
      continue;
    }
    if (std::holds_alternative<cpu::ExitBudgetExhausted>(exit)) {
      std::fprintf(stderr, "dvmm_difftest: instruction budget exhausted at pc 0x%llx\n",
                   static_cast<unsigned long long>(hart.pc()));
      return 102;
    }
    std::fprintf(stderr, "dvmm_difftest: unexpected exit %s at pc 0x%llx\n", cpu::exit_name(exit),
                 static_cast<unsigned long long>(hart.pc()));
    return 103;
  }
}
