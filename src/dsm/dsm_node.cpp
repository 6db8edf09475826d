#include "dsm/dsm_node.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace dvmm::dsm {

namespace {

bool may_revoke(MsgType t) {
  // Revocations take the page from this node; requests (at the home) may make the home
  // take it from itself. Grants and acks only ever give.
  switch (t) {
    case MsgType::kDowngrade:
    case MsgType::kFetchInvalidate:
    case MsgType::kInvalidate:
    case MsgType::kReadRequest:
    case MsgType::kWriteRequest:
    case MsgType::kEvictRequest:
      return true;
    default:
      return false;
  }
}

}  // namespace

DsmNode::DsmNode(const HomeMap& homes, LocalPages& local, Transport& transport, DsmOptions options)
    : self_(transport.self()),
      homes_(homes),
      local_(local),
      transport_(transport),
      options_(std::move(options)),
      limits_{homes.page_count(), homes.node_count()},
      home_first_(homes.first_page(transport.self())),
      home_count_(homes.end_page(transport.self()) - homes.first_page(transport.self())) {
  if (local.page_count() != homes.page_count()) {
    throw std::invalid_argument("dsm: local pages and home map disagree on the page count");
  }
  if (transport.node_count() != homes.node_count() || self_ >= homes.node_count()) {
    throw std::invalid_argument("dsm: transport and home map disagree on the nodes");
  }
  cache_.resize(homes.page_count());
  dir_.resize(home_count_);
  bounce_counts_ = std::make_unique<std::atomic<u64>[]>(home_count_);
  for (u64 p = 0; p < homes.page_count(); ++p) {
    const PageState st = initial_page_state(self_, homes.home_of(p));
    cache_[p] = st.cache;
    if (is_home(p)) dir_[p - home_first_] = st.dir;
  }
}

DsmNode::~DsmNode() {
  stop();
}

void DsmNode::start() {
  if (started_) return;
  started_ = true;
  for (u64 p = 0; p < homes_.page_count(); ++p) local_.init_access(p, cache_[p].access);
  transport_.set_receiver(
      [this](NodeId from, std::span<const u8> bytes) { on_receive(from, bytes); });
  service_ = std::thread([this] { service_loop(); });
}

void DsmNode::stop() {
  {
    std::unique_lock lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    waiters_cv_.notify_all();
    service_cv_.notify_all();
    // A processor finishes its current input (process_locked checks stopping_ between
    // inputs); the state must not be torn down under it.
    idle_cv_.wait(lock, [&] { return !processing_; });
  }
  if (service_.joinable()) service_.join();
  if (started_) transport_.set_receiver({});
}

// ------------------------------------------------------------------------ entry points

bool DsmNode::acquire(Gpa gpa, AccessType type, const WaitHook& serve,
                      const std::function<bool()>& give_up) {
  if (!homes_.contains(gpa)) throw std::out_of_range("dsm: acquire outside guest RAM");
  const u64 page = homes_.page_index(gpa);
  if (local_.allows(page, type)) return true;
  counters_.faults[static_cast<unsigned>(type) % 3].fetch_add(1, std::memory_order_relaxed);

  auto fault = [&] {
    Input in;
    in.kind = Input::Kind::kFault;
    in.page = page;
    in.type = type;
    return in;
  };
  const auto started = Clock::now();
  Waiter w{page, needed_access(type)};
  std::unique_lock lock(mutex_);
  waiters_.push_back(&w);
  inbox_.push_back(fault());
  auto last_fault = Clock::now();
  bool ok = true;
  bool spun = false;
  for (;;) {
    if (!processing_ && has_work_locked()) process_locked(lock, serve);
    if (local_.allows(page, type)) break;
    if (stopping_ || (give_up && give_up())) {
      ok = false;
      break;
    }
    // Lost the page between its grant and now (the hold expired), or waiting suspiciously
    // long: fault again. The protocol ignores a fault it is already serving.
    const auto now = Clock::now();
    if (w.refault || now - last_fault > std::chrono::milliseconds(50)) {
      w.refault = false;
      last_fault = now;
      inbox_.push_back(fault());
      continue;
    }
    if (!spun && options_.spin.count() > 0) {
      // The request is out: spin for the grant before sleeping.
      spun = true;
      lock.unlock();
      transport_.expect_reply();
      transport_.poll_for(
          [&] {
            if (serve) serve();
            return local_.allows(page, type) || (give_up && give_up());
          },
          options_.spin);
      lock.lock();
      continue;
    }
    waiters_cv_.wait_for(lock, options_.poll);
    if (local_.allows(page, type)) break;
    if (serve) {
      lock.unlock();
      serve();
      lock.lock();
    }
  }
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &w));
  // Inputs held back for this waiter may go now.
  if (deferred_.count(page) != 0) service_cv_.notify_one();
  lock.unlock();
  if (ok) {
    const auto ns = static_cast<u64>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count());
    (is_home(page) ? fault_local_home_ : fault_remote_home_).record(ns);
  }
  return ok;
}

void DsmNode::evict(Gpa gpa) {
  if (!homes_.contains(gpa)) return;
  Input in;
  in.kind = Input::Kind::kEvict;
  in.page = homes_.page_index(gpa);
  // Never processed on the caller's thread: it may be a vCPU whose hart would then have
  // to serve a flush that this thread waits for.
  push_and_process(std::move(in), {}, false);
}

void DsmNode::notify_waiters() {
  { std::lock_guard lock(mutex_); }
  waiters_cv_.notify_all();
}

void DsmNode::on_receive(NodeId from, std::span<const u8> bytes) {
  const Decoded d = decode(bytes, limits_);
  if (d.error != WireError::kOk) {
    reject(std::string("malformed message from node ") + std::to_string(from) + ": " +
           wire_error_name(d.error));
    return;
  }
  if (d.msg.from != from) {
    reject("message from node " + std::to_string(from) + " claims to come from node " +
           std::to_string(d.msg.from));
    return;
  }
  counters_.messages_received.fetch_add(1, std::memory_order_relaxed);
  Input in;
  in.kind = Input::Kind::kMessage;
  in.page = d.msg.page;
  in.msg = d.msg;
  if (!d.payload.empty()) {
    in.payload = std::make_unique<PageBuf>();
    std::copy(d.payload.begin(), d.payload.end(), in.payload->begin());
  }
  push_and_process(std::move(in), {}, options_.inline_receive);
}

void DsmNode::push_and_process(Input in, const WaitHook& hook, bool process_here) {
  std::unique_lock lock(mutex_);
  if (stopping_) return;
  inbox_.push_back(std::move(in));
  if (processing_) return;  // the current processor takes it
  if (process_here) {
    process_locked(lock, hook);
  } else {
    service_cv_.notify_one();
  }
}

// ------------------------------------------------------------------------ processing

void DsmNode::process_locked(std::unique_lock<std::mutex>& lock, const WaitHook& hook) {
  processing_ = true;
  Input in;
  while (!stopping_ && take_next_locked(in)) {
    lock.unlock();
    handle(in, hook);
    lock.lock();
  }
  processing_ = false;
  idle_cv_.notify_all();
}

bool DsmNode::has_work_locked() {
  if (!inbox_.empty()) return true;
  const auto now = Clock::now();
  for (auto& [page, q] : deferred_) {
    if (!held_locked(page, now)) return true;
  }
  return false;
}

bool DsmNode::held_locked(u64 page, Clock::time_point now) {
  auto it = raised_.find(page);
  if (it == raised_.end()) return false;
  if (now - it->second < options_.max_hold) {
    for (const Waiter* w : waiters_) {
      if (w->page == page && satisfies(local_.access(page), w->need)) return true;
    }
  }
  raised_.erase(it);
  return false;
}

bool DsmNode::take_next_locked(Input& in) {
  const auto now = Clock::now();
  for (auto it = deferred_.begin(); it != deferred_.end(); ++it) {
    if (held_locked(it->first, now)) continue;
    in = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) deferred_.erase(it);
    return true;
  }
  while (!inbox_.empty()) {
    in = std::move(inbox_.front());
    inbox_.pop_front();
    auto d = deferred_.find(in.page);
    if (d != deferred_.end()) {  // keep the page's inputs in order behind the held ones
      d->second.push_back(std::move(in));
      continue;
    }
    if (in.kind == Input::Kind::kMessage && may_revoke(in.msg.type) && held_locked(in.page, now)) {
      counters_.holds.fetch_add(1, std::memory_order_relaxed);
      deferred_[in.page].push_back(std::move(in));
      service_cv_.notify_one();  // it needs a deadline
      continue;
    }
    return true;
  }
  return false;
}

void DsmNode::handle(Input& in, const WaitHook& hook) {
  const u64 page = in.page;
  const Context ctx{self_, homes_.home_of(page), homes_.node_count()};
  PageState st;
  st.cache = cache_[page];
  const bool home = is_home(page);
  if (home) st.dir = std::move(dir_[page - home_first_]);
  const bool was_busy = st.dir.busy;

  Step step;
  switch (in.kind) {
    case Input::Kind::kMessage:
      step = on_message(ctx, st, in.msg);
      break;
    case Input::Kind::kFault:
      step = on_local_fault(ctx, st, page, in.type);
      break;
    case Input::Kind::kEvict:
      step = on_local_evict(ctx, st, page);
      break;
  }
  cache_[page] = st.cache;
  if (home) dir_[page - home_first_] = std::move(st.dir);

  if (step.error != ProtocolError::kNone) {
    reject(std::string("unexpected ") + msg_type_name(in.msg.type) + " from node " +
           std::to_string(in.msg.from) + " for page " + std::to_string(page) + ": " +
           protocol_error_name(step.error));
    return;
  }
  if (home && was_busy && in.kind == Input::Kind::kMessage &&
      (in.msg.type == MsgType::kReadRequest || in.msg.type == MsgType::kWriteRequest)) {
    counters_.queued.fetch_add(1, std::memory_order_relaxed);
  }
  execute(step, in, hook);
}

void DsmNode::execute(const Step& step, Input& in, const WaitHook& hook) {
  const u64 page = in.page;
  bool wake = false;
  PageBuf local_copy;
  for (const Action& a : step.actions) {
    switch (a.kind) {
      case ActionKind::kSend: {
        const Header h = encode_header(a.msg);
        std::span<const u8> payload;
        if (a.data == DataSource::kLocalPage) {
          // After any lowering earlier in this step: the harts have flushed, so stores
          // that raced with the revocation are in the copy.
          local_.read_page(page, local_copy);
          payload = local_copy;
        } else if (a.data == DataSource::kIncoming && in.payload) {
          payload = *in.payload;
        }
        transport_.send(a.to, h, payload);
        counters_.messages_sent.fetch_add(1, std::memory_order_relaxed);
        if (!payload.empty()) counters_.pages_sent.fetch_add(1, std::memory_order_relaxed);
        switch (a.msg.type) {
          case MsgType::kReadRequest:
          case MsgType::kWriteRequest:
            counters_.requests_sent.fetch_add(1, std::memory_order_relaxed);
            break;
          case MsgType::kEvictRequest:
            counters_.evictions_sent.fetch_add(1, std::memory_order_relaxed);
            break;
          case MsgType::kInvalidate:
          case MsgType::kFetchInvalidate:
            counters_.invalidations_sent.fetch_add(1, std::memory_order_relaxed);
            break;
          case MsgType::kDowngrade:
            counters_.downgrades_sent.fetch_add(1, std::memory_order_relaxed);
            break;
          default:
            break;
        }
        break;
      }
      case ActionKind::kSetAccess: {
        const PageAccess old = local_.access(page);
        if (static_cast<u8>(a.access) < static_cast<u8>(old)) {
          // Blocked acquire() callers must serve their harts' flush requests; tell them
          // once the flush has been requested (LocalPages calls while_waiting after that).
          bool told = false;
          WaitHook while_waiting = [&] {
            if (!told) {
              told = true;
              notify_waiters();
            }
            if (hook) hook();
          };
          local_.set_access(page, a.access, while_waiting);
          std::lock_guard lock(mutex_);
          for (Waiter* w : waiters_) {
            if (w->page == page) w->refault = true;
          }
        } else {
          local_.set_access(page, a.access, {});
          std::lock_guard lock(mutex_);
          for (const Waiter* w : waiters_) {
            if (w->page == page && satisfies(a.access, w->need)) {
              raised_[page] = Clock::now();
              break;
            }
          }
        }
        break;
      }
      case ActionKind::kInstallData:
        if (in.payload) {
          local_.write_page(page, *in.payload);
          counters_.pages_received.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case ActionKind::kWake:
        wake = true;
        local_.page_available(page);
        break;
      case ActionKind::kComplete:
        counters_.transactions.fetch_add(1, std::memory_order_relaxed);
        if (a.bounced) {
          counters_.bounces.fetch_add(1, std::memory_order_relaxed);
          if (is_home(page)) {
            bounce_counts_[page - home_first_].fetch_add(1, std::memory_order_relaxed);
          }
        }
        break;
    }
  }
  if (in.kind == Input::Kind::kMessage) {
    switch (in.msg.type) {
      case MsgType::kInvalidate:
      case MsgType::kFetchInvalidate:
        counters_.invalidations_received.fetch_add(1, std::memory_order_relaxed);
        break;
      case MsgType::kDowngrade:
        counters_.downgrades_received.fetch_add(1, std::memory_order_relaxed);
        break;
      case MsgType::kGrant:
        if (in.msg.access == PageAccess::kReadWrite) {
          counters_.upgrades.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      default:
        break;
    }
  }
  if (wake) notify_waiters();
}

void DsmNode::service_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!processing_ && has_work_locked()) {
      process_locked(lock, {});
      continue;
    }
    // Sleep until the earliest hold on a page with held-back inputs runs out.
    auto deadline = Clock::time_point::max();
    for (auto& [page, q] : deferred_) {
      auto it = raised_.find(page);
      if (it != raised_.end()) deadline = std::min(deadline, it->second + options_.max_hold);
    }
    if (deadline == Clock::time_point::max()) {
      service_cv_.wait(lock);
    } else {
      service_cv_.wait_until(lock, deadline);
    }
  }
}

void DsmNode::reject(const std::string& why) {
  const std::string line = "dsm node " + std::to_string(self_) + ": " + why;
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  // After logging, so that whoever sees the count also finds the line.
  counters_.rejected.fetch_add(1, std::memory_order_relaxed);
}

// ------------------------------------------------------------------------ queries

DsmCounters DsmNode::counters() const {
  auto ld = [](const std::atomic<u64>& a) { return a.load(std::memory_order_relaxed); };
  DsmCounters c;
  c.faults_read = ld(counters_.faults[0]);
  c.faults_write = ld(counters_.faults[1]);
  c.faults_execute = ld(counters_.faults[2]);
  c.requests_sent = ld(counters_.requests_sent);
  c.evictions_sent = ld(counters_.evictions_sent);
  c.messages_sent = ld(counters_.messages_sent);
  c.messages_received = ld(counters_.messages_received);
  c.pages_sent = ld(counters_.pages_sent);
  c.pages_received = ld(counters_.pages_received);
  c.invalidations_sent = ld(counters_.invalidations_sent);
  c.invalidations_received = ld(counters_.invalidations_received);
  c.downgrades_sent = ld(counters_.downgrades_sent);
  c.downgrades_received = ld(counters_.downgrades_received);
  c.upgrades = ld(counters_.upgrades);
  c.transactions = ld(counters_.transactions);
  c.bounces = ld(counters_.bounces);
  c.queued = ld(counters_.queued);
  c.holds = ld(counters_.holds);
  c.rejected = ld(counters_.rejected);
  c.fault_remote_home = fault_remote_home_.snapshot();
  c.fault_local_home = fault_local_home_.snapshot();
  return c;
}

std::vector<PageBounce> DsmNode::top_bounced(std::size_t n) const {
  std::vector<PageBounce> all;
  for (u64 i = 0; i < home_count_; ++i) {
    const u64 c = bounce_counts_[i].load(std::memory_order_relaxed);
    if (c != 0) all.push_back({home_first_ + i, c});
  }
  const std::size_t k = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const PageBounce& a, const PageBounce& b) {
                      return a.count != b.count ? a.count > b.count : a.page < b.page;
                    });
  all.resize(k);
  return all;
}

PageState DsmNode::debug_state(u64 page) const {
  std::lock_guard lock(mutex_);
  PageState st;
  st.cache = cache_.at(page);
  if (is_home(page)) st.dir = dir_[page - home_first_];
  return st;
}

bool DsmNode::idle() const {
  std::lock_guard lock(mutex_);
  return !processing_ && inbox_.empty() && deferred_.empty();
}

}  // namespace dvmm::dsm
