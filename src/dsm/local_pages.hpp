// The node-local side of the DSM: what the protocol's actions do to this node's memory.
//
// Owns nothing; it is the narrow interface between the coherence runtime (dsm_node.hpp)
// and the node's guest RAM and harts. GuestRamPages is the implementation over
// memory::GuestRam; the TLB shootdown is injected as a function because the dsm layer
// sits below cpu (the vmm passes one that uses Hart::request_flush / flush_done).
//
// Threads: allows() and access() from any thread (lock-free). set_access, read_page and
// write_page are called by the DSM node's processing thread only, one at a time per node.
#pragma once

#include <functional>
#include <span>

#include "base/types.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::dsm {

using WaitHook = std::function<void()>;

class LocalPages {
 public:
  virtual ~LocalPages() = default;
  virtual u64 page_count() const = 0;
  virtual memory::PageAccess access(u64 page) const = 0;
  virtual bool allows(u64 page, memory::AccessType type) const = 0;
  // Sets the initial access before any hart runs: no flush.
  virtual void init_access(u64 page, memory::PageAccess access) = 0;
  // Raising: stores the new access. Lowering: stores the new access FIRST, then has every
  // local hart drop the page from its TLB and decoded instructions and waits until all
  // have, calling `while_waiting` (if set) at least once after the flush was requested
  // and then repeatedly until done. On return no local hart can use the page beyond
  // `access` and every store made under the old access is in memory, so the page may be
  // copied out.
  virtual void set_access(u64 page, memory::PageAccess access, const WaitHook& while_waiting) = 0;
  virtual void read_page(u64 page, std::span<u8, kPageSize> out) const = 0;
  // Writes the page's bytes (its access is None here) and invalidates decoded code.
  virtual void write_page(u64 page, std::span<const u8, kPageSize> data) = 0;
  // The page became accessible; for waiters outside DsmNode::acquire (optional).
  virtual void page_available(u64 /*page*/) {}
};

class GuestRamPages final : public LocalPages {
 public:
  // Makes every local hart drop `page` (or simply everything) from its TLB and decoded
  // instructions, and waits until they all have, calling while_waiting between polls
  // (at least once after requesting). Empty: the node has no harts that cache pages.
  using Flusher = std::function<void(u64 page, const WaitHook& while_waiting)>;

  GuestRamPages(memory::GuestRam& ram, Flusher flusher) : ram_(ram), flusher_(std::move(flusher)) {}

  u64 page_count() const override { return ram_.page_count(); }
  memory::PageAccess access(u64 page) const override { return ram_.access(page); }
  bool allows(u64 page, memory::AccessType type) const override { return ram_.allows(page, type); }
  void init_access(u64 page, memory::PageAccess access) override { ram_.set_access(page, access); }
  void set_access(u64 page, memory::PageAccess access, const WaitHook& while_waiting) override;
  void read_page(u64 page, std::span<u8, kPageSize> out) const override;
  void write_page(u64 page, std::span<const u8, kPageSize> data) override;

 private:
  memory::GuestRam& ram_;
  Flusher flusher_;
};

}  // namespace dvmm::dsm
