// The gdb remote serial protocol over TCP (what it offers: gdb_stub.hpp, docs/GDB.md):
// packet framing and acknowledgements, the riscv:rv64 target description, registers and
// memory of paused harts, and all-stop run control built on the execution controls.
//
// Threads: everything here runs on the stub's thread, except the constructor and
// destructor (the VM's controlling thread). A hart's state is only touched inside
// Vm::with_paused_hart, which keeps its vCPU paused meanwhile.
#include "control/gdb_stub.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpu/csr.hpp"

namespace dvmm::control {

namespace {

using namespace std::chrono_literals;

// The largest packet gdb may send us (announced in qSupported), and so the largest memory
// read we answer in one reply (two hex digits a byte).
constexpr std::size_t kPacketSize = 0x4000;
constexpr std::size_t kMaxMemoryRead = kPacketSize / 2 - 16;
// gdb's RISC-V register numbers (gdb/riscv-tdep.h): CSR n is 65 + n, priv is 65 + 4096.
constexpr unsigned kPcReg = 32;
constexpr unsigned kFirstFpReg = 33;
constexpr unsigned kFirstCsrReg = 65;
constexpr unsigned kPrivReg = kFirstCsrReg + 4096;
constexpr u16 kCsrSie = 0x104;
// How long to wait for the vCPUs to pause or take new controls before trying again.
constexpr auto kPauseWait = 2000ms;
// How often a running VM is checked for a vCPU that stopped (and gdb for a Ctrl-C): often
// in the first moments, when a single-step ends (gdb steps through a source line one
// instruction at a time), then every few ms.
constexpr auto kEagerPoll = 2ms;
constexpr auto kEagerInterval = 20us;
constexpr int kPollMs = 5;

constexpr const char* kXNames[32] = {"zero", "ra", "sp",  "gp",  "tp", "t0", "t1", "t2",
                                     "fp",   "s1", "a0",  "a1",  "a2", "a3", "a4", "a5",
                                     "a6",   "a7", "s2",  "s3",  "s4", "s5", "s6", "s7",
                                     "s8",   "s9", "s10", "s11", "t3", "t4", "t5", "t6"};
constexpr const char* kFNames[32] = {"ft0", "ft1", "ft2",  "ft3",  "ft4", "ft5", "ft6",  "ft7",
                                     "fs0", "fs1", "fa0",  "fa1",  "fa2", "fa3", "fa4",  "fa5",
                                     "fa6", "fa7", "fs2",  "fs3",  "fs4", "fs5", "fs6",  "fs7",
                                     "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11"};

std::size_t breakpoint_exit_kind() {
  return cpu::Exit(cpu::ExitBreakpoint{}).index();
}

// The S-mode CSRs gdb sees in the "csr" feature (fflags, frm and fcsr are in the FPU's).
bool is_described_csr(unsigned csr) {
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    if (info.number == csr) return (info.flags & cpu::CsrInfo::kFloat) == 0;
  }
  return false;
}

std::string target_xml() {
  std::string x =
      "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n"
      "<target version=\"1.0\">\n<architecture>riscv:rv64</architecture>\n"
      "<feature name=\"org.gnu.gdb.riscv.cpu\">\n";
  for (unsigned i = 0; i < 32; ++i) {
    const char* type = i == 1 ? "code_ptr" : (i >= 2 && i <= 4) || i == 8 ? "data_ptr" : "int";
    x += fmt::format("<reg name=\"{}\" bitsize=\"64\" type=\"{}\" regnum=\"{}\"/>\n", kXNames[i],
                     type, i);
  }
  x += fmt::format("<reg name=\"pc\" bitsize=\"64\" type=\"code_ptr\" regnum=\"{}\"/>\n", kPcReg);
  x += "</feature>\n<feature name=\"org.gnu.gdb.riscv.fpu\">\n"
       "<union id=\"riscv_double\"><field name=\"float\" type=\"ieee_single\"/>"
       "<field name=\"double\" type=\"ieee_double\"/></union>\n";
  for (unsigned i = 0; i < 32; ++i) {
    x += fmt::format("<reg name=\"{}\" bitsize=\"64\" type=\"riscv_double\" regnum=\"{}\"/>\n",
                     kFNames[i], kFirstFpReg + i);
  }
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    if ((info.flags & cpu::CsrInfo::kFloat) == 0) continue;
    x += fmt::format("<reg name=\"{}\" bitsize=\"32\" type=\"int\" regnum=\"{}\"/>\n", info.name,
                     kFirstCsrReg + info.number);
  }
  x += "</feature>\n<feature name=\"org.gnu.gdb.riscv.csr\">\n";
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    if ((info.flags & cpu::CsrInfo::kFloat) != 0) continue;
    x += fmt::format("<reg name=\"{}\" bitsize=\"64\" type=\"int\" regnum=\"{}\"/>\n", info.name,
                     kFirstCsrReg + info.number);
  }
  x += fmt::format(
      "</feature>\n<feature name=\"org.gnu.gdb.riscv.virtual\">\n"
      "<reg name=\"priv\" bitsize=\"64\" type=\"int\" regnum=\"{}\"/>\n</feature>\n</target>\n",
      kPrivReg);
  return x;
}

// A register's size in bytes in the protocol, 0 for a number that names none of ours.
unsigned reg_size(unsigned n) {
  if (n <= kPcReg || (n >= kFirstFpReg && n < kFirstFpReg + 32) || n == kPrivReg) return 8;
  if (n > kFirstCsrReg && n <= kFirstCsrReg + 3) return 4;  // fflags, frm, fcsr
  if (n > kFirstCsrReg && n < kPrivReg && is_described_csr(n - kFirstCsrReg)) return 8;
  return 0;
}

std::optional<u64> read_reg(const cpu::Hart& h, unsigned n) {
  if (n < 32) return h.x(n);
  if (n == kPcReg) return h.pc();
  if (n < kFirstFpReg + 32) return h.f(n - kFirstFpReg);
  if (n == kPrivReg) return h.privilege() == cpu::Privilege::kUser ? 0 : 1;
  if (reg_size(n) != 0) return h.debug_read_csr(static_cast<u16>(n - kFirstCsrReg));
  return std::nullopt;
}

bool write_reg(cpu::Hart& h, unsigned n, u64 v) {
  if (n < 32) {
    h.set_x(n, v);  // x0 stays zero
    return true;
  }
  if (n == kPcReg) {
    h.set_pc(v & ~u64{1});
    return true;
  }
  if (n < kFirstFpReg + 32) {
    h.set_f(n - kFirstFpReg, v);
    return true;
  }
  // priv is read-only: changing privilege behind the guest's back has no sane meaning.
  if (n == kPrivReg || reg_size(n) == 0) return false;
  return h.debug_write_csr(static_cast<u16>(n - kFirstCsrReg), v);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A number in hex as gdb writes addresses and lengths (most significant digit first).
std::optional<u64> parse_hex(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  u64 v = 0;
  for (char c : s) {
    const int d = hex_digit(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<u64>(d);
  }
  return v;
}

bool parse_bytes(std::string_view s, std::vector<u8>& out) {
  if (s.size() % 2 != 0) return false;
  out.clear();
  for (std::size_t i = 0; i < s.size(); i += 2) {
    const int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<u8>(hi << 4 | lo));
  }
  return true;
}

std::string hex_bytes(const u8* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

// Register values travel in target byte order: little-endian.
std::string hex_le(u64 v, unsigned bytes) {
  u8 b[8];
  for (unsigned i = 0; i < 8; ++i) b[i] = static_cast<u8>(v >> (8 * i));
  return hex_bytes(b, bytes);
}

std::optional<u64> parse_hex_le(std::string_view s, unsigned bytes) {
  std::vector<u8> b;
  if (s.size() != 2 * bytes || !parse_bytes(s, b)) return std::nullopt;
  u64 v = 0;
  for (unsigned i = 0; i < bytes; ++i) v |= u64{b[i]} << (8 * i);
  return v;
}

std::string hex_text(std::string_view text) {
  return hex_bytes(reinterpret_cast<const u8*>(text.data()), text.size());
}

// Binary data in a reply (qXfer): '#', '$', '}' and '*' are escaped as '}' then c ^ 0x20.
std::string escape_binary(std::string_view data) {
  std::string out;
  for (char c : data) {
    if (c == '#' || c == '$' || c == '}' || c == '*') {
      out.push_back('}');
      out.push_back(static_cast<char>(c ^ 0x20));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Copies guest-virtual memory to or from `buf` through hart h's page tables (physical when
// its paging is off); returns the bytes done, stopping at the first page that is unmapped
// or not RAM. The hart is paused (with_paused_hart).
std::size_t copy_virtual(cpu::Hart& h, memory::GuestRam& ram, u64 va, u8* buf, std::size_t len,
                         bool write) {
  // debug_translate checks the PTE against the hart's privilege (adding SUM); a debugger
  // looks as the kernel does, also while the hart runs user code, so borrow S-mode for the
  // walk. The hart is paused: nothing else reads priv_ meanwhile.
  const cpu::Privilege priv = h.priv_;
  h.priv_ = cpu::Privilege::kSupervisor;
  std::size_t done = 0;
  while (done < len) {
    const u64 addr = va + done;
    const std::size_t chunk = std::min<u64>(len - done, kPageSize - (addr & kPageMask));
    // Read permission also for writes: a debugger may patch read-only data and text.
    const auto gpa = h.debug_translate(addr, memory::AccessType::kRead);
    if (!gpa || !ram.contains(*gpa, chunk)) break;
    const bool ok = write ? ram.write(*gpa, buf + done, chunk) : ram.read(*gpa, buf + done, chunk);
    if (!ok) break;
    done += chunk;
  }
  h.priv_ = priv;
  return done;
}

}  // namespace

std::optional<GdbAddress> parse_gdb_address(std::string_view text, std::string* error) {
  auto bad = [&](const std::string& why) -> std::optional<GdbAddress> {
    if (error) *error = why;
    return std::nullopt;
  };
  constexpr const char* kForm = "expected PORT or HOST:PORT, e.g. 127.0.0.1:1234";
  std::string_view host = "127.0.0.1";
  std::string_view port = text;
  if (text.empty()) return bad(std::string("empty address; ") + kForm);
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad(fmt::format("'{}': {} (an IPv6 address as [::1]:1234)", text, kForm));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad(fmt::format("'{}': put an IPv6 address in brackets, e.g. [::1]:1234", text));
    }
  }
  if (host.empty()) return bad(fmt::format("'{}': no host before the ':'; {}", text, kForm));
  if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad(port == text
                   ? fmt::format("'{}' is not a port number; {}", text, kForm)
                   : fmt::format("'{}': '{}' is not a port number; {}", text, port, kForm));
  }
  if (port.size() > 5 || std::stoul(std::string(port)) > 65535) {
    return bad(
        fmt::format("'{}': port {} is out of range (1-65535, or 0 for any free port)", text, port));
  }
  return GdbAddress{std::string(host), static_cast<u16>(std::stoul(std::string(port)))};
}

// ------------------------------------------------------------------------------ session

// One gdb connection: attach (pause the VM), serve packets, detach (restore and resume).
class GdbStub::Session {
 public:
  Session(GdbStub& stub, int fd)
      : stub_(stub), vm_(stub.vm_), fd_(fd), harts_(vm_.machine().hart_count()) {}
  void run();

 private:
  enum class Run : u8 { kStop, kContinue, kStep };
  enum class Why : u8 { kTrap, kSwBreak, kHwBreak, kInterrupt };
  // The connection ends: gdb went away (or misbehaved), or the stub shuts down.
  struct Closed {
    bool by_stub;
  };
  struct Reply {
    std::string text;
    bool send = true;
    bool end = false;  // the session ends after this reply
  };

  std::optional<u8> get(int timeout_ms);
  void send_raw(std::string_view bytes);
  std::string read_packet();
  void send_packet(std::string_view payload);

  Reply dispatch(const std::string& p);
  std::string query(const std::string& p);
  std::string registers_read();
  std::string registers_write(std::string_view hex);
  std::string register_read(std::string_view args);
  std::string register_write(std::string_view args);
  std::string memory_read(std::string_view args);
  std::string memory_write(std::string_view args);
  std::string breakpoint(const std::string& p);
  std::string resume_packet(const std::string& p);
  std::optional<std::vector<Run>> parse_vcont(std::string_view actions);

  bool pause_all(bool may_throw);
  std::string resume(const std::vector<Run>& run);
  std::string wait_for_stop(const std::vector<Run>& run);
  void program_controls(const std::vector<Run>& run);
  void hold_interrupts(HartId h);
  void release_interrupts();
  Why breakpoint_at(HartId h);
  std::string report(HartId h, Why why);
  std::size_t access_memory(u64 va, u8* buf, std::size_t len, bool write);
  void detach();
  void log(const std::string& line) {
    if (stub_.hooks_.log) stub_.hooks_.log(line);
  }

  GdbStub& stub_;
  vmm::Vm& vm_;
  int fd_;
  unsigned harts_;
  u8 in_[4096];
  std::size_t in_pos_ = 0, in_len_ = 0;
  bool no_ack_ = false;

  std::vector<vmm::VmControls> saved_;  // every vCPU's controls before gdb came
  std::vector<u64> sw_bps_, hw_bps_;    // guest-virtual pcs
  std::vector<u64> baseline_;           // Vcpu::self_pauses() at the last resume
  // Harts that stopped at a breakpoint together with the one reported; reported next.
  std::vector<HartId> pending_;
  // Harts stepping with their interrupt enables held at zero, and the enables to restore.
  std::vector<std::pair<HartId, u64>> held_;
  HartId g_hart_ = 0;  // Hg: registers and memory
  HartId c_hart_ = 0;  // Hc: legacy 's'
  bool c_any_ = true;
  HartId stop_hart_ = 0;  // the thread of the last stop reply
  std::string last_stop_;
};

std::optional<u8> GdbStub::Session::get(int timeout_ms) {
  if (in_pos_ < in_len_) return in_[in_pos_++];
  pollfd fds[3] = {
      {fd_, POLLIN, 0}, {stub_.wake_pipe_[0], POLLIN, 0}, {stub_.listen_fd_, POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, 3, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Closed{false};
    }
    if (fds[1].revents != 0) throw Closed{true};
    if (fds[2].revents != 0) {
      // One gdb at a time: a second one is closed at once ("Remote connection closed")
      // rather than left waiting for answers that do not come.
      if (const int other = ::accept4(stub_.listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          other >= 0) {
        ::close(other);
        log("gdb: refused a second connection (one gdb at a time)");
      }
      fds[2].revents = 0;
      if (fds[0].revents == 0) continue;
    }
    if (n == 0) return std::nullopt;
    const ssize_t r = ::recv(fd_, in_, sizeof in_, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) throw Closed{false};
    in_len_ = static_cast<std::size_t>(r);
    in_pos_ = 0;
    return in_[in_pos_++];
  }
}

void GdbStub::Session::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Closed{false};
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string GdbStub::Session::read_packet() {
  for (;;) {
    // Before a '$': acknowledgements, and a Ctrl-C while stopped (nothing to interrupt).
    if (*get(-1) != '$') continue;
    std::string data;
    u8 sum = 0;
    for (;;) {
      const u8 c = *get(-1);
      if (c == '#') break;
      if (data.size() > 2 * kPacketSize) throw Closed{false};  // not gdb
      data.push_back(static_cast<char>(c));
      sum = static_cast<u8>(sum + c);
    }
    const int hi = hex_digit(static_cast<char>(*get(-1)));
    const int lo = hex_digit(static_cast<char>(*get(-1)));
    const bool good = hi >= 0 && lo >= 0 && (hi << 4 | lo) == sum;
    if (no_ack_) return data;
    send_raw(good ? "+" : "-");  // '-' asks gdb to send it again
    if (good) return data;
  }
}

void GdbStub::Session::send_packet(std::string_view payload) {
  u8 sum = 0;
  for (char c : payload) sum = static_cast<u8>(sum + static_cast<u8>(c));
  const std::string frame = fmt::format("${}#{:02x}", payload, sum);
  for (int attempt = 0; attempt < 10; ++attempt) {
    send_raw(frame);
    if (no_ack_) return;
    for (;;) {
      const u8 c = *get(-1);
      if (c == '+') return;
      if (c == '-') break;  // corrupted on the way: send again
    }
  }
  throw Closed{false};
}

void GdbStub::Session::run() {
  try {
    for (HartId h = 0; h < harts_; ++h) saved_.push_back(vm_.controls(h));
    baseline_.assign(harts_, 0);
    // gdb expects a stopped target once it is connected (all-stop mode).
    pause_all(true);
    last_stop_ = report(0, Why::kTrap);
    for (;;) {
      const std::string p = read_packet();
      const Reply r = dispatch(p);
      if (r.send) send_packet(r.text);
      if (r.end) break;
    }
  } catch (const Closed& c) {
    if (!c.by_stub) log("gdb: the connection ended without a detach; detaching");
  }
  detach();
}

GdbStub::Session::Reply GdbStub::Session::dispatch(const std::string& p) {
  if (p.empty()) return {""};
  const std::string_view args = std::string_view(p).substr(1);
  switch (p[0]) {
    case '?':
      return {last_stop_};
    case 'g':
      return {registers_read()};
    case 'G':
      return {registers_write(args)};
    case 'p':
      return {register_read(args)};
    case 'P':
      return {register_write(args)};
    case 'm':
      return {memory_read(args)};
    case 'M':
      return {memory_write(args)};
    case 'Z':
    case 'z':
      return {breakpoint(p)};
    case 'c':
    case 's':
      return {resume_packet(p)};
    case 'H': {
      if (args.empty()) return {"E01"};
      const std::string_view tid = args.substr(1);
      HartId h = 0;
      bool any = tid == "0" || tid == "-1";
      if (!any) {
        const auto v = parse_hex(tid);
        if (!v || *v == 0 || *v > harts_) return {"E01"};
        h = static_cast<HartId>(*v - 1);
      }
      if (args[0] == 'g') {
        if (!any) g_hart_ = h;
      } else if (args[0] == 'c') {
        c_any_ = any;
        if (!any) c_hart_ = h;
      } else {
        return {"E01"};
      }
      return {"OK"};
    }
    case 'T': {
      const auto v = parse_hex(args);
      return {v && *v >= 1 && *v <= harts_ ? "OK" : "E01"};
    }
    case 'D':
      log("gdb detached; the guest runs on");
      return {"OK", true, true};
    case 'k':
      log("gdb asked to kill the guest: stopping the VM");
      if (stub_.hooks_.stop) stub_.hooks_.stop("killed from gdb");
      return {"", false, true};
    case 'q':
      return {query(p)};
    case 'Q':
      if (p == "QStartNoAckMode") {
        // gdb still acknowledges this reply; read_packet skips that '+'.
        send_packet("OK");
        no_ack_ = true;
        return {"", false};
      }
      return {""};
    case 'v':
      if (p == "vCont?") return {"vCont;c;C;s;S"};
      if (p.starts_with("vCont;")) return {resume_packet(p)};
      return {""};  // vMustReplyEmpty, and whatever we do not support
    default:
      return {""};  // unsupported: gdb falls back or tells the user
  }
}

std::string GdbStub::Session::query(const std::string& p) {
  if (p.starts_with("qSupported")) {
    return fmt::format(
        "PacketSize={:x};qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;"
        "vContSupported+",
        kPacketSize);
  }
  if (p.starts_with("qXfer:features:read:")) {
    const std::string_view rest = std::string_view(p).substr(20);
    const std::size_t colon = rest.find(':');
    if (colon == std::string_view::npos || rest.substr(0, colon) != "target.xml") return "E00";
    const std::string_view range = rest.substr(colon + 1);
    const std::size_t comma = range.find(',');
    const auto offset = parse_hex(range.substr(0, comma));
    const auto length =
        comma == std::string_view::npos ? std::nullopt : parse_hex(range.substr(comma + 1));
    if (!offset || !length) return "E00";
    static const std::string xml = target_xml();
    if (*offset >= xml.size()) return "l";
    const std::string_view chunk = std::string_view(xml).substr(*offset, *length);
    return (*offset + chunk.size() >= xml.size() ? "l" : "m") + escape_binary(chunk);
  }
  if (p == "qfThreadInfo") {
    std::string s = "m";
    for (HartId h = 0; h < harts_; ++h) s += fmt::format("{}{:x}", h ? "," : "", h + 1);
    return s;
  }
  if (p == "qsThreadInfo") return "l";
  if (p == "qC") return fmt::format("QC{:x}", stop_hart_ + 1);
  if (p.starts_with("qAttached")) return "1";  // gdb detaches, never kills, when it quits
  if (p.starts_with("qSymbol")) return "OK";
  if (p.starts_with("qThreadExtraInfo,")) {
    const auto v = parse_hex(std::string_view(p).substr(17));
    if (!v || *v == 0 || *v > harts_) return "E01";
    const HartId h = static_cast<HartId>(*v - 1);
    std::string text = fmt::format("hart {}", h);
    vm_.with_paused_hart(h, [&](cpu::Hart& hart) {
      text += hart.privilege() == cpu::Privilege::kUser ? ", U-mode" : ", S-mode";
    });
    return hex_text(text);
  }
  return "";
}

std::string GdbStub::Session::registers_read() {
  std::string out;
  const bool ok = vm_.with_paused_hart(g_hart_, [&](cpu::Hart& h) {
    for (unsigned n = 0; n <= kPcReg; ++n) out += hex_le(*read_reg(h, n), 8);
  });
  return ok ? out : "E01";
}

std::string GdbStub::Session::registers_write(std::string_view hex) {
  bool good = true;
  const bool ok = vm_.with_paused_hart(g_hart_, [&](cpu::Hart& h) {
    // x0..x31 and pc; gdb may send more (registers it has no 'g' offsets for): ignored.
    for (unsigned n = 0; n <= kPcReg && hex.size() >= 16 * (n + 1); ++n) {
      const auto v = parse_hex_le(hex.substr(16 * n, 16), 8);
      if (!v) {
        good = false;
        return;
      }
      write_reg(h, n, *v);
    }
  });
  return ok && good ? "OK" : "E01";
}

std::string GdbStub::Session::register_read(std::string_view args) {
  const auto n = parse_hex(args);
  if (!n || *n > kPrivReg || reg_size(static_cast<unsigned>(*n)) == 0) return "E01";
  std::optional<u64> v;
  vm_.with_paused_hart(g_hart_, [&](cpu::Hart& h) { v = read_reg(h, static_cast<unsigned>(*n)); });
  return v ? hex_le(*v, reg_size(static_cast<unsigned>(*n))) : "E01";
}

std::string GdbStub::Session::register_write(std::string_view args) {
  const std::size_t eq = args.find('=');
  if (eq == std::string_view::npos) return "E01";
  const auto n = parse_hex(args.substr(0, eq));
  if (!n || *n > kPrivReg || reg_size(static_cast<unsigned>(*n)) == 0) return "E01";
  const auto v = parse_hex_le(args.substr(eq + 1), reg_size(static_cast<unsigned>(*n)));
  if (!v) return "E01";
  bool done = false;
  vm_.with_paused_hart(g_hart_,
                       [&](cpu::Hart& h) { done = write_reg(h, static_cast<unsigned>(*n), *v); });
  return done ? "OK" : "E01";
}

std::size_t GdbStub::Session::access_memory(u64 va, u8* buf, std::size_t len, bool write) {
  memory::GuestRam& ram = vm_.machine().ram();
  std::size_t done = 0;
  vm_.with_paused_hart(g_hart_,
                       [&](cpu::Hart& h) { done = copy_virtual(h, ram, va, buf, len, write); });
  // Kernel-half addresses map the same in every address space: a hart whose paging is off
  // (a secondary hart not started yet) reads them through another hart's page tables.
  for (HartId other = 0; other < harts_ && done < len && ((va + done) >> 63) != 0; ++other) {
    if (other == g_hart_) continue;
    vm_.with_paused_hart(other, [&](cpu::Hart& h) {
      done += copy_virtual(h, ram, va + done, buf + done, len - done, write);
    });
  }
  return done;
}

std::string GdbStub::Session::memory_read(std::string_view args) {
  const std::size_t comma = args.find(',');
  if (comma == std::string_view::npos) return "E01";
  const auto addr = parse_hex(args.substr(0, comma));
  const auto len = parse_hex(args.substr(comma + 1));
  if (!addr || !len) return "E01";
  std::vector<u8> buf(std::min<u64>(*len, kMaxMemoryRead));
  const std::size_t done = access_memory(*addr, buf.data(), buf.size(), false);
  if (done == 0 && !buf.empty()) return "E14";  // EFAULT: gdb shows "Cannot access memory"
  return hex_bytes(buf.data(), done);           // a short read is a partial success
}

std::string GdbStub::Session::memory_write(std::string_view args) {
  const std::size_t comma = args.find(',');
  const std::size_t colon = args.find(':');
  if (comma == std::string_view::npos || colon == std::string_view::npos || colon < comma) {
    return "E01";
  }
  const auto addr = parse_hex(args.substr(0, comma));
  const auto len = parse_hex(args.substr(comma + 1, colon - comma - 1));
  std::vector<u8> data;
  if (!addr || !len || !parse_bytes(args.substr(colon + 1), data) || data.size() != *len) {
    return "E01";
  }
  const std::size_t done = access_memory(*addr, data.data(), data.size(), true);
  // A paused hart may sit inside a page whose decoded instructions the write made stale;
  // it only re-validates on entering a page, so have every hart drop its decoded code.
  for (HartId h = 0; h < harts_; ++h) vm_.machine().hart(h).request_flush();
  return done == data.size() ? "OK" : "E14";
}

std::string GdbStub::Session::breakpoint(const std::string& p) {
  // Z<type>,<addr>,<kind>: type 0 software, 1 hardware; watchpoints (2-4) are not offered.
  if (p.size() < 4 || p[2] != ',' || (p[1] != '0' && p[1] != '1')) return "";
  const std::string_view rest = std::string_view(p).substr(3);
  const auto addr = parse_hex(rest.substr(0, rest.find(',')));
  if (!addr) return "E01";
  // Kept here and given to the vCPUs as execution controls when the VM next runs.
  std::vector<u64>& set = p[1] == '0' ? sw_bps_ : hw_bps_;
  const auto it = std::find(set.begin(), set.end(), *addr);
  if (p[0] == 'Z' && it == set.end()) set.push_back(*addr);
  if (p[0] == 'z' && it != set.end()) set.erase(it);
  return "OK";
}

std::optional<std::vector<GdbStub::Session::Run>> GdbStub::Session::parse_vcont(
    std::string_view actions) {
  std::vector<std::optional<Run>> chosen(harts_);
  while (!actions.empty()) {
    const std::size_t semi = actions.find(';');
    const std::string_view item = actions.substr(0, semi);
    actions = semi == std::string_view::npos ? std::string_view() : actions.substr(semi + 1);
    if (item.empty()) return std::nullopt;
    Run r;
    switch (item[0]) {
      case 'c':
      case 'C':  // continue with a signal: there are no signals to deliver to a machine
        r = Run::kContinue;
        break;
      case 's':
      case 'S':
        r = Run::kStep;
        break;
      case 't':
        r = Run::kStop;
        break;
      default:
        return std::nullopt;
    }
    // The leftmost action that names a thread wins for it; one without applies to the rest.
    const std::size_t colon = item.find(':');
    if (colon == std::string_view::npos || item.substr(colon + 1) == "-1") {
      for (auto& c : chosen) {
        if (!c) c = r;
      }
      continue;
    }
    const auto tid = parse_hex(item.substr(colon + 1));
    if (!tid || *tid > harts_) return std::nullopt;
    const HartId h = *tid == 0 ? stop_hart_ : static_cast<HartId>(*tid - 1);
    if (!chosen[h]) chosen[h] = r;
  }
  std::vector<Run> run(harts_, Run::kStop);
  for (HartId h = 0; h < harts_; ++h) run[h] = chosen[h].value_or(Run::kStop);
  return run;
}

std::string GdbStub::Session::resume_packet(const std::string& p) {
  std::vector<Run> run;
  if (p[0] == 'v') {
    auto parsed = parse_vcont(std::string_view(p).substr(6));
    if (!parsed) return "E01";
    run = std::move(*parsed);
  } else {
    // Legacy c [addr] (every hart) and s [addr] (only the Hc hart; the others stay).
    const HartId h = c_any_ ? stop_hart_ : c_hart_;
    if (p.size() > 1) {
      const auto addr = parse_hex(std::string_view(p).substr(1));
      if (!addr) return "E01";
      vm_.with_paused_hart(h, [&](cpu::Hart& hart) { hart.set_pc(*addr); });
    }
    run.assign(harts_, p[0] == 'c' ? Run::kContinue : Run::kStop);
    if (p[0] == 's') run[h] = Run::kStep;
  }
  return resume(run);
}

bool GdbStub::Session::pause_all(bool may_throw) {
  for (;;) {
    if (vm_.pause(std::nullopt, kPauseWait)) return true;
    if (stub_.stopping_.load() || !may_throw) {
      if (may_throw) throw Closed{true};
      return false;
    }
    // The vCPUs have not started yet (or restart for a guest reboot): they pause as they
    // come up, since the request stays.
    std::this_thread::sleep_for(20ms);
  }
}

GdbStub::Session::Why GdbStub::Session::breakpoint_at(HartId h) {
  Why why = Why::kTrap;
  vm_.with_paused_hart(h, [&](cpu::Hart& hart) {
    if (std::find(sw_bps_.begin(), sw_bps_.end(), hart.pc()) != sw_bps_.end()) {
      why = Why::kSwBreak;
    } else if (std::find(hw_bps_.begin(), hw_bps_.end(), hart.pc()) != hw_bps_.end()) {
      why = Why::kHwBreak;
    }
  });
  return why;
}

std::string GdbStub::Session::report(HartId h, Why why) {
  // gdb takes the stopped thread as the stub's current one for registers and memory.
  stop_hart_ = g_hart_ = h;
  last_stop_ = fmt::format("T{}thread:{:x};{}", why == Why::kInterrupt ? "02" : "05", h + 1,
                           why == Why::kSwBreak   ? "swbreak:;"
                           : why == Why::kHwBreak ? "hwbreak:;"
                                                  : "");
  return last_stop_;
}

void GdbStub::Session::program_controls(const std::vector<Run>& run) {
  for (HartId h = 0; h < harts_; ++h) {
    vmm::VmControls c = vm_.controls(h);
    const vmm::VmControls before = c;
    c.exec.breakpoints = saved_[h].exec.breakpoints;
    for (const auto* set : {&sw_bps_, &hw_bps_}) {
      for (u64 pc : *set) {
        if (std::find(c.exec.breakpoints.begin(), c.exec.breakpoints.end(), pc) ==
            c.exec.breakpoints.end()) {
          c.exec.breakpoints.push_back(pc);
        }
      }
    }
    c.exec.single_step = run[h] == Run::kStep;
    // All-stop: the vCPU that hits a breakpoint or ends its step pauses itself at once.
    c.action = vmm::ExitAction::kPause;
    if (c == before) continue;
    if (!vm_.set_controls(c, h, kPauseWait)) {
      log(fmt::format("gdb: hart {} did not take its breakpoints within 2 s", h));
    }
  }
}

void GdbStub::Session::hold_interrupts(HartId h) {
  // A step holds the hart's interrupt enables (sie) at zero, as QEMU's gdbstub does: after
  // a stop the guest's timer is long due, and every step would land in the trap vector.
  // Not around SYSTEM instructions (csr*, wfi, ecall, sret, ebreak): they read sie, wait
  // for an interrupt, or call the SBI, which may.
  memory::GuestRam& ram = vm_.machine().ram();
  vm_.with_paused_hart(h, [&](cpu::Hart& hart) {
    u8 raw[4] = {};
    const std::size_t got = copy_virtual(hart, ram, hart.pc(), raw, sizeof raw, false);
    const u32 insn = u32{raw[0]} | u32{raw[1]} << 8 | u32{raw[2]} << 16 | u32{raw[3]} << 24;
    if (got < 2) return;
    if ((insn & 3) == 3 && (got < 4 || (insn & 0x7f) == 0x73)) return;
    if ((insn & 3) != 3 && (insn & 0xffff) == 0x9002) return;  // c.ebreak
    const u64 sie = hart.debug_read_csr(kCsrSie).value_or(0);
    if (sie == 0) return;
    hart.debug_write_csr(kCsrSie, 0);
    held_.emplace_back(h, sie);
  });
}

void GdbStub::Session::release_interrupts() {
  for (const auto& [h, sie] : held_) {
    vm_.with_paused_hart(h, [&, s = sie](cpu::Hart& hart) { hart.debug_write_csr(kCsrSie, s); });
  }
  held_.clear();
}

std::string GdbStub::Session::resume(const std::vector<Run>& run) {
  // A hart that hit a breakpoint together with the one reported last is reported now,
  // before anything runs: its pc is still at the breakpoint, and running it would step
  // over the breakpoint unseen. Harts gdb keeps stopped keep theirs for later.
  std::vector<HartId> later;
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    const HartId h = pending_[i];
    if (run[h] == Run::kStop) {
      later.push_back(h);
      continue;
    }
    if (const Why why = breakpoint_at(h); why != Why::kTrap) {
      later.insert(later.end(), pending_.begin() + static_cast<long>(i) + 1, pending_.end());
      pending_ = std::move(later);
      return report(h, why);
    }
  }
  pending_ = std::move(later);
  if (std::all_of(run.begin(), run.end(), [](Run r) { return r == Run::kStop; })) {
    return report(stop_hart_, Why::kTrap);  // nothing to run: still stopped
  }

  program_controls(run);
  for (HartId h = 0; h < harts_; ++h) {
    if (run[h] == Run::kStep) hold_interrupts(h);
    baseline_[h] = vm_.vcpu(h).self_pauses();
  }
  for (HartId h = 0; h < harts_; ++h) {
    if (run[h] != Run::kStop) vm_.resume(h);
  }
  return wait_for_stop(run);
}

std::string GdbStub::Session::wait_for_stop(const std::vector<Run>& run) {
  bool interrupted = false;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const bool eager = std::chrono::steady_clock::now() - start < kEagerPoll;
    try {
      // gdb sends nothing but Ctrl-C while the target runs.
      if (const auto b = get(eager ? 0 : kPollMs); b && *b == 0x03) interrupted = true;
    } catch (const Closed& c) {
      // The VM is over while gdb waits for it: say so (no ack awaited, we are leaving).
      if (c.by_stub) {
        try {
          send_raw("$W00#b7");
        } catch (const Closed&) {
        }
      }
      throw;
    }
    bool stopped = interrupted;
    for (HartId h = 0; h < harts_ && !stopped; ++h) {
      stopped = vm_.vcpu(h).self_pauses() != baseline_[h];
    }
    if (!stopped) {
      if (eager) std::this_thread::sleep_for(kEagerInterval);
      continue;
    }

    pause_all(true);
    release_interrupts();
    // The harts that stopped by themselves: the stepping one first, then by hart number.
    std::vector<HartId> hits;
    for (HartId h = 0; h < harts_; ++h) {
      if (vm_.vcpu(h).self_pauses() != baseline_[h]) hits.push_back(h);
    }
    std::stable_partition(hits.begin(), hits.end(), [&](HartId h) { return run[h] == Run::kStep; });
    if (hits.empty()) {
      // Ctrl-C: report a hart that was running.
      HartId h = stop_hart_;
      for (HartId i = 0; i < harts_ && run[h] == Run::kStop; ++i) h = i;
      return report(h, Why::kInterrupt);
    }
    for (std::size_t i = 1; i < hits.size(); ++i) {
      if (vm_.vcpu(hits[i]).last_self_pause_kind() == breakpoint_exit_kind()) {
        pending_.push_back(hits[i]);
      }
    }
    const HartId h = hits.front();
    const std::size_t kind = vm_.vcpu(h).last_self_pause_kind();
    // A step is a plain SIGTRAP; so is another intercepted event the user's own controls
    // asked to pause for (an exception, a CSR access).
    const Why why = kind == breakpoint_exit_kind() ? breakpoint_at(h) : Why::kTrap;
    return report(h, why);
  }
}

void GdbStub::Session::detach() {
  // Everything back as before gdb came, then every vCPU runs: the guest goes on.
  pause_all(false);
  release_interrupts();
  for (HartId h = 0; h < harts_ && h < saved_.size(); ++h) {
    vmm::VmControls c = vm_.controls(h);
    const vmm::VmControls before = c;
    c.exec.breakpoints = saved_[h].exec.breakpoints;
    c.exec.single_step = saved_[h].exec.single_step;
    c.action = saved_[h].action;
    if (!(c == before)) vm_.set_controls(c, h, kPauseWait);
  }
  vm_.resume(std::nullopt);
}

// ------------------------------------------------------------------------------ the stub

GdbStub::GdbStub(const GdbAddress& address, vmm::Vm& vm, GdbStubHooks hooks)
    : vm_(vm), hooks_(std::move(hooks)) {
  const std::string given = address.host.find(':') != std::string::npos
                                ? fmt::format("[{}]:{}", address.host, address.port)
                                : fmt::format("{}:{}", address.host, address.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (const int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error(
        fmt::format("--gdb {}: unknown host '{}': {}", given, address.host, ::gai_strerror(rc)));
  }
  std::string problem = "no address to listen on";
  for (addrinfo* a = found; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      problem = std::strerror(errno);
      continue;
    }
    // A restarted dvmm may take the port again at once (TIME_WAIT of the last session);
    // Linux still refuses a port that another socket listens on.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1) != 0) {
      problem = std::strerror(errno);
      if (errno == EADDRINUSE) problem += " (another program listens there; choose another port)";
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) throw std::runtime_error(fmt::format("--gdb {}: {}", given, problem));

  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    ::getnameinfo(reinterpret_cast<sockaddr*>(&bound), len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV);
  }
  where_ = bound.ss_family == AF_INET6 ? fmt::format("[{}]:{}", host, serv)
                                       : fmt::format("{}:{}", host, serv);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { serve(); });
}

GdbStub::~GdbStub() {
  stopping_.store(true);
  const char c = 0;
  [[maybe_unused]] const ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

void GdbStub::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // Packets are small and answered one at a time: no Nagle delay.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
    ::getnameinfo(reinterpret_cast<sockaddr*>(&peer), len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV);
    if (hooks_.log)
      hooks_.log(fmt::format("gdb attached from {}:{}; the guest is paused", host, serv));
    try {
      Session session(*this, fd);
      session.run();
    } catch (const std::exception& e) {
      // A bug here must not take the VM down: drop this gdb, keep listening.
      if (hooks_.log)
        hooks_.log(std::string("gdb: internal error, connection dropped: ") + e.what());
      vm_.resume(std::nullopt);
    }
    ::close(fd);
  }
}

}  // namespace dvmm::control
