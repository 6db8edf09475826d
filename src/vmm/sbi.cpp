#include "vmm/sbi.hpp"

#include <chrono>
#include <thread>

namespace dvmm::vmm {

namespace {

constexpr u16 kCsrSip = 0x144;
constexpr u16 kCsrStimecmp = 0x14d;

// Function ids.
enum : u64 {
  kBaseGetSpecVersion = 0,
  kBaseGetImplId = 1,
  kBaseGetImplVersion = 2,
  kBaseProbeExtension = 3,
  kBaseGetMvendorid = 4,
  kBaseGetMarchid = 5,
  kBaseGetMimpid = 6,
};
enum : u64 { kRfenceFenceI = 0, kRfenceSfenceVma = 1, kRfenceSfenceVmaAsid = 2 };
enum : u64 { kHsmStart = 0, kHsmStop = 1, kHsmGetStatus = 2, kHsmSuspend = 3 };
enum : u64 { kDbcnWrite = 0, kDbcnRead = 1, kDbcnWriteByte = 2 };

// SRST types and reasons (spec 2.0, chapter 10).
constexpr u64 kResetShutdown = 0;
constexpr u64 kResetCold = 1;
constexpr u64 kResetWarm = 2;
constexpr u64 kReasonNone = 0;
constexpr u64 kReasonSystemFailure = 1;

// HSM suspend types (spec 2.0, table 9.3).
constexpr u64 kSuspendDefaultRetentive = 0x0000'0000;
constexpr u64 kSuspendDefaultNonRetentive = 0x8000'0000;

}  // namespace

NodeLinks& SbiPlatform::links() {
  static SingleNodeLinks single;
  return single;
}

const char* hsm_state_name(HsmState s) {
  switch (s) {
    case HsmState::kStarted:
      return "started";
    case HsmState::kStopped:
      return "stopped";
    case HsmState::kStartPending:
      return "start-pending";
    case HsmState::kStopPending:
      return "stop-pending";
    case HsmState::kSuspended:
      return "suspended";
    case HsmState::kSuspendPending:
      return "suspend-pending";
    case HsmState::kResumePending:
      return "resume-pending";
  }
  return "?";
}

Sbi::Sbi(SbiPlatform& platform, u64 impl_version)
    : platform_(platform), impl_version_(impl_version), harts_(platform.hart_count()) {
  reset_harts(0);
}

std::size_t Sbi::extension_index(u64 eid) {
  switch (eid) {
    case kSbiExtBase:
      return 1;
    case kSbiExtTime:
      return 2;
    case kSbiExtIpi:
      return 3;
    case kSbiExtRfence:
      return 4;
    case kSbiExtHsm:
      return 5;
    case kSbiExtSrst:
      return 6;
    case kSbiExtDbcn:
      return 7;
    default:
      return eid <= 0x0f ? 0 : 8;
  }
}

bool Sbi::probe(u64 eid) const {
  switch (eid) {
    case kSbiLegacySetTimer:
    case kSbiLegacyConsolePutchar:
    case kSbiLegacyConsoleGetchar:
    case kSbiLegacyClearIpi:
    case kSbiLegacySendIpi:
    case kSbiLegacyRemoteFenceI:
    case kSbiLegacyRemoteSfenceVma:
    case kSbiLegacyRemoteSfenceVmaAsid:
    case kSbiLegacyShutdown:
    case kSbiExtBase:
    case kSbiExtTime:
    case kSbiExtIpi:
    case kSbiExtRfence:
    case kSbiExtHsm:
    case kSbiExtSrst:
    case kSbiExtDbcn:
      return true;
    default:
      return false;
  }
}

SbiOutcome Sbi::handle(cpu::Hart& caller, const cpu::ExitSbiCall& call) {
  calls_[extension_index(call.eid)].fetch_add(1, std::memory_order_relaxed);
  SbiOutcome outcome;
  const u64* a = call.args;
  if (call.eid <= 0x0f) {
    const i64 ret = legacy(caller, call.eid, a, &outcome);
    // v0.1 calls return in a0 only: a1 keeps the caller's value.
    if (outcome.action == SbiOutcome::Action::kResume) caller.set_sbi_result(ret, caller.x(11));
    return outcome;
  }
  Result r{kSbiErrNotSupported, 0};
  switch (call.eid) {
    case kSbiExtBase:
      r = base(call.fid, a);
      break;
    case kSbiExtTime:
      r = time(caller, call.fid, a);
      break;
    case kSbiExtIpi:
      r = ipi(call.fid, a);
      break;
    case kSbiExtRfence:
      r = rfence(caller, call.fid, a);
      break;
    case kSbiExtHsm:
      r = hsm(caller, call.fid, a, &outcome);
      break;
    case kSbiExtSrst:
      r = srst(call.fid, a, &outcome);
      break;
    case kSbiExtDbcn:
      r = dbcn(caller, call.fid, a);
      break;
    default:
      break;
  }
  if (outcome.action == SbiOutcome::Action::kResume ||
      outcome.action == SbiOutcome::Action::kSuspend) {
    caller.set_sbi_result(r.error, r.value);
  }
  return outcome;
}

// ------------------------------------------------------------------------------- BASE

Sbi::Result Sbi::base(u64 fid, const u64* a) {
  switch (fid) {
    case kBaseGetSpecVersion:
      return {kSbiSuccess, kSpecVersion};
    case kBaseGetImplId:
      return {kSbiSuccess, kImplId};
    case kBaseGetImplVersion:
      return {kSbiSuccess, impl_version_};
    case kBaseProbeExtension:
      return {kSbiSuccess, probe(a[0]) ? 1u : 0u};
    // We emulate no particular vendor's machine: 0 is "not implemented" for all three.
    case kBaseGetMvendorid:
    case kBaseGetMarchid:
    case kBaseGetMimpid:
      return {kSbiSuccess, 0};
    default:
      return {kSbiErrNotSupported, 0};
  }
}

// ------------------------------------------------------------------------------- TIME

Sbi::Result Sbi::time(cpu::Hart& caller, u64 fid, const u64* a) {
  if (fid != 0) return {kSbiErrNotSupported, 0};
  // The hart implements Sstc: the SBI timer is the same comparator the guest could write
  // itself. A deadline in the future also clears a pending timer interrupt, as the spec asks.
  caller.debug_write_csr(kCsrStimecmp, a[0]);
  return {kSbiSuccess, 0};
}

// ------------------------------------------------------------------------------- IPI

bool Sbi::decode_mask(u64 mask, u64 base, std::vector<HartId>* harts) const {
  const unsigned n = platform_.hart_count();
  harts->clear();
  if (base == ~u64{0}) {  // hart_mask_base == -1: every hart, hart_mask ignored
    for (HartId h = 0; h < n; ++h) harts->push_back(h);
    return true;
  }
  for (unsigned bit = 0; bit < 64; ++bit) {
    if (!((mask >> bit) & 1)) continue;
    const u64 id = base + bit;
    if (id < base || id >= n) return false;
    harts->push_back(static_cast<HartId>(id));
  }
  return true;
}

void Sbi::send_ipis(const std::vector<HartId>& harts) {
  NodeLinks& links = platform_.links();
  for (HartId h : harts) {
    if (links.is_local(h)) {
      platform_.hart(h).raise_software_interrupt();
    } else {
      links.send_ipi(h);
    }
  }
}

Sbi::Result Sbi::ipi(u64 fid, const u64* a) {
  if (fid != 0) return {kSbiErrNotSupported, 0};
  std::vector<HartId> targets;
  if (!decode_mask(a[0], a[1], &targets)) return {kSbiErrInvalidParam, 0};
  send_ipis(targets);
  return {kSbiSuccess, 0};
}

// ------------------------------------------------------------------------------- RFENCE

void Sbi::remote_flush(cpu::Hart& caller, const std::vector<HartId>& harts) {
  // Every target drops all of its TLB and decoded instructions: a superset of fence.i and
  // of any sfence.vma range or ASID, so one request covers all three calls.
  NodeLinks& links = platform_.links();
  std::vector<std::pair<cpu::Hart*, u64>> tickets;
  std::vector<HartId> remote;
  for (HartId h : harts) {
    if (!links.is_local(h)) {
      remote.push_back(h);
      continue;
    }
    cpu::Hart& target = platform_.hart(h);
    const u64 ticket = target.request_flush();
    if (&target != &caller) tickets.emplace_back(&target, ticket);
  }
  // Our own request is ours to serve (we are the caller's hart thread).
  caller.service_requests();
  // Harts on other nodes: their nodes flush them and acknowledge; we serve meanwhile.
  if (!remote.empty()) links.remote_fence(remote, [&caller] { caller.service_requests(); });
  // Synchronous: wait until every target has flushed. A target may be running (it takes
  // the request at its next instruction boundary), waiting in WFI or stopped (its vCPU
  // thread is woken by the request and serves it), or itself inside an SBI call waiting
  // for us: so keep serving our own requests while we wait, or two harts fencing each
  // other would deadlock.
  unsigned spins = 0;
  for (;;) {
    bool all = true;
    for (const auto& [hart, ticket] : tickets) all = all && hart->flush_done(ticket);
    if (all || platform_.stopping()) return;
    caller.service_requests();
    if (++spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
}

Sbi::Result Sbi::rfence(cpu::Hart& caller, u64 fid, const u64* a) {
  if (fid != kRfenceFenceI && fid != kRfenceSfenceVma && fid != kRfenceSfenceVmaAsid) {
    return {kSbiErrNotSupported, 0};  // the hfence calls need the H extension
  }
  std::vector<HartId> targets;
  if (!decode_mask(a[0], a[1], &targets)) return {kSbiErrInvalidParam, 0};
  remote_flush(caller, targets);
  return {kSbiSuccess, 0};
}

// ------------------------------------------------------------------------------- HSM

void Sbi::reset_harts(HartId boot_hart) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < harts_.size(); ++i) {
    harts_[i] = HartSlot{};
    harts_[i].state = i == boot_hart ? HsmState::kStarted : HsmState::kStopped;
  }
}

HsmState Sbi::state(HartId id) const {
  std::lock_guard lock(mutex_);
  return harts_.at(id).state;
}

std::optional<Sbi::StartRequest> Sbi::take_start(HartId id) {
  std::lock_guard lock(mutex_);
  HartSlot& s = harts_.at(id);
  if (s.state != HsmState::kStartPending) return std::nullopt;
  s.state = HsmState::kStarted;
  return StartRequest{s.start_addr, s.opaque};
}

void Sbi::finish_stop(HartId id) {
  std::lock_guard lock(mutex_);
  HartSlot& s = harts_.at(id);
  if (s.state == HsmState::kStopPending) s.state = HsmState::kStopped;
}

void Sbi::end_suspend(HartId id) {
  std::lock_guard lock(mutex_);
  HartSlot& s = harts_.at(id);
  if (s.state == HsmState::kSuspended) s.state = HsmState::kStarted;
}

i64 Sbi::hart_start_local(HartId id, u64 start_addr, u64 opaque) {
  if (id >= harts_.size()) return kSbiErrInvalidParam;
  {
    std::lock_guard lock(mutex_);
    HartSlot& s = harts_[id];
    if (s.state != HsmState::kStopped) return kSbiErrAlreadyAvailable;
    s.state = HsmState::kStartPending;
    s.start_addr = start_addr;
    s.opaque = opaque;
  }
  platform_.wake(id);
  return kSbiSuccess;
}

Sbi::Result Sbi::hsm(cpu::Hart& caller, u64 fid, const u64* a, SbiOutcome* outcome) {
  switch (fid) {
    case kHsmStart: {
      const u64 id = a[0];
      if (id >= harts_.size()) return {kSbiErrInvalidParam, 0};
      // The hart starts in S-mode with paging off at a physical address: it must be RAM.
      if (!platform_.ram().contains(a[1], 2)) return {kSbiErrInvalidAddress, 0};
      NodeLinks& links = platform_.links();
      const auto hart = static_cast<HartId>(id);
      if (!links.is_local(hart)) {
        return {links.hart_start(hart, a[1], a[2], [&caller] { caller.service_requests(); }), 0};
      }
      return {hart_start_local(hart, a[1], a[2]), 0};
    }
    case kHsmStop: {
      std::lock_guard lock(mutex_);
      HartSlot& s = harts_[caller.id()];
      if (s.state != HsmState::kStarted) return {kSbiErrFailed, 0};
      s.state = HsmState::kStopPending;
      outcome->action = SbiOutcome::Action::kStopHart;
      return {kSbiSuccess, 0};
    }
    case kHsmGetStatus: {
      const u64 id = a[0];
      if (id >= harts_.size()) return {kSbiErrInvalidParam, 0};
      NodeLinks& links = platform_.links();
      if (!links.is_local(static_cast<HartId>(id))) {
        const auto st =
            links.hart_status(static_cast<HartId>(id), [&caller] { caller.service_requests(); });
        if (!st) return {kSbiErrFailed, 0};
        return {kSbiSuccess, static_cast<u64>(*st)};
      }
      std::lock_guard lock(mutex_);
      return {kSbiSuccess, static_cast<u64>(harts_[id].state)};
    }
    case kHsmSuspend: {
      const u64 type = a[0] & 0xffff'ffff;
      if (type == kSuspendDefaultRetentive) {
        // Retentive suspend is a WFI with the HSM state showing SUSPENDED; the call returns
        // 0 once an interrupt is pending (spec 9.4).
        {
          std::lock_guard lock(mutex_);
          harts_[caller.id()].state = HsmState::kSuspended;
        }
        outcome->action = SbiOutcome::Action::kSuspend;
        return {kSbiSuccess, 0};
      }
      // Types 0x1..0x0FFFFFFF and 0x80000001..0x8FFFFFFF are reserved: invalid. The default
      // non-retentive and the platform-specific types are allowed but not offered here.
      const bool reserved =
          (type >= 0x1 && type <= 0x0fff'ffff) || (type >= 0x8000'0001 && type <= 0x8fff'ffff);
      if (reserved) return {kSbiErrInvalidParam, 0};
      (void)kSuspendDefaultNonRetentive;
      return {kSbiErrNotSupported, 0};
    }
    default:
      return {kSbiErrNotSupported, 0};
  }
}

// ------------------------------------------------------------------------------- SRST

Sbi::Result Sbi::srst(u64 fid, const u64* a, SbiOutcome* outcome) {
  if (fid != 0) return {kSbiErrNotSupported, 0};
  const u64 type = a[0] & 0xffff'ffff;
  const u64 reason = a[1] & 0xffff'ffff;
  if (reason != kReasonNone && reason != kReasonSystemFailure) return {kSbiErrInvalidParam, 0};
  switch (type) {
    case kResetShutdown:
      outcome->action = SbiOutcome::Action::kShutdown;
      // A shutdown because of a system failure ends `dvmm run` with status 1.
      outcome->status = reason == kReasonSystemFailure ? 1 : 0;
      return {kSbiSuccess, 0};
    case kResetCold:
    case kResetWarm:
      outcome->action = SbiOutcome::Action::kReboot;
      return {kSbiSuccess, 0};
    default:
      return {kSbiErrInvalidParam, 0};
  }
}

// ------------------------------------------------------------------------------- DBCN

bool Sbi::own_page(cpu::Hart& caller, u64 page, memory::AccessType type) {
  memory::GuestRam& ram = platform_.ram();
  NodeLinks& links = platform_.links();
  while (!ram.allows(page, type)) {
    if (!links.acquire_page(ram.base() + (page << kPageShift), type,
                            [&caller] { caller.service_requests(); })) {
      return false;
    }
  }
  return true;
}

Sbi::Result Sbi::dbcn(cpu::Hart& caller, u64 fid, const u64* a) {
  switch (fid) {
    case kDbcnWrite:
    case kDbcnRead: {
      const u64 len = a[0];
      // rv64: the address is base_addr_lo; base_addr_hi must be 0 (spec 12.1).
      if (a[2] != 0) return {kSbiErrInvalidParam, 0};
      const Gpa addr = a[1];
      if (len == 0) return {kSbiSuccess, 0};
      memory::GuestRam& ram = platform_.ram();
      if (!ram.contains(addr, len)) return {kSbiErrInvalidParam, 0};
      // Page by page: on a distributed VM each page may live on another node.
      if (fid == kDbcnWrite) {
        std::string text;
        for (u64 done = 0; done < len;) {
          const Gpa at = addr + done;
          const u64 chunk = std::min(len - done, kPageSize - (at & kPageMask));
          if (!own_page(caller, ram.page_index(at), memory::AccessType::kRead)) {
            return {kSbiErrFailed, 0};
          }
          text.append(reinterpret_cast<const char*>(ram.host_ptr(at)), chunk);
          done += chunk;
        }
        platform_.console_write(text);
        return {kSbiSuccess, len};
      }
      u64 n = 0;
      for (; n < len; ++n) {
        if (!own_page(caller, ram.page_index(addr + n), memory::AccessType::kWrite)) break;
        const int c = platform_.console_read();
        if (c < 0) break;
        const u8 byte = static_cast<u8>(c);
        ram.write(addr + n, &byte, 1);
      }
      return {kSbiSuccess, n};
    }
    case kDbcnWriteByte: {
      const char c = static_cast<char>(a[0] & 0xff);
      platform_.console_write(std::string_view(&c, 1));
      return {kSbiSuccess, 0};
    }
    default:
      return {kSbiErrNotSupported, 0};
  }
}

// ------------------------------------------------------------------------------- legacy

std::optional<u64> Sbi::read_legacy_mask(cpu::Hart& caller, u64 va) {
  // The v0.1 hart mask is passed by (S-mode virtual) address. (On a distributed VM the
  // page-table pages must be here already: the caller just used them.)
  const auto gpa = caller.debug_translate(va, memory::AccessType::kRead);
  if (!gpa || !platform_.ram().contains(*gpa, sizeof(u64))) return std::nullopt;
  if ((*gpa & kPageMask) + sizeof(u64) > kPageSize) return std::nullopt;  // spans pages
  if (!own_page(caller, platform_.ram().page_index(*gpa), memory::AccessType::kRead)) {
    return std::nullopt;
  }
  u64 mask = 0;
  if (!platform_.ram().read(*gpa, &mask, sizeof mask)) return std::nullopt;
  return mask;
}

i64 Sbi::legacy(cpu::Hart& caller, u64 eid, const u64* a, SbiOutcome* outcome) {
  auto targets_of = [&](u64 mask_va, std::vector<HartId>* harts) {
    // A null pointer means every hart (as OpenSBI reads it).
    if (mask_va == 0) return decode_mask(0, ~u64{0}, harts);
    const auto mask = read_legacy_mask(caller, mask_va);
    if (!mask) return false;
    return decode_mask(*mask, 0, harts);
  };
  std::vector<HartId> harts;
  switch (eid) {
    case kSbiLegacySetTimer:
      caller.debug_write_csr(kCsrStimecmp, a[0]);
      return 0;
    case kSbiLegacyConsolePutchar: {
      const char c = static_cast<char>(a[0] & 0xff);
      platform_.console_write(std::string_view(&c, 1));
      return 0;
    }
    case kSbiLegacyConsoleGetchar:
      return platform_.console_read();
    case kSbiLegacyClearIpi: {
      const u64 sip = caller.debug_read_csr(kCsrSip).value_or(0);
      caller.debug_write_csr(kCsrSip, sip & ~(u64{1} << cpu::kSsi));
      return 0;
    }
    case kSbiLegacySendIpi:
      if (!targets_of(a[0], &harts)) return kSbiErrInvalidParam;
      send_ipis(harts);
      return 0;
    case kSbiLegacyRemoteFenceI:
    case kSbiLegacyRemoteSfenceVma:
    case kSbiLegacyRemoteSfenceVmaAsid:
      if (!targets_of(a[0], &harts)) return kSbiErrInvalidParam;
      remote_flush(caller, harts);
      return 0;
    case kSbiLegacyShutdown:
      outcome->action = SbiOutcome::Action::kShutdown;
      outcome->status = 0;
      return 0;
    default:
      return kSbiErrNotSupported;
  }
}

}  // namespace dvmm::vmm
