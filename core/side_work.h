// Side work: more CUDA streams per device (and thread) for work that need not delay the current
// stream. The WTA-CRS sampler's selection in forward runs there, beside the next layers' GEMMs;
// only its results' consumers (the node's backward) wait for it.
//
// A section forks from the current stream with an event (the side stream sees everything queued
// before the fork) and is joined back with another (the current stream's later work waits for
// it): stream capture's own fork/join pattern, so a CUDA graph captures side work as a concurrent
// branch of the step. Sections take the side streams (lanes) in turn, so that consecutive sections run
// concurrently (a sampler's selection is one block: one SM each); the streams are non-blocking
// (no implicit ordering with the legacy stream) and have the device's highest priority, so their
// small kernels start as soon as an SM is free.
//
// Memory: the caching allocator hands a block freed by side work only to side work again, which
// orders its reuse on the side stream (core/caching_allocator.h). A tensor of the current stream
// that side work reads must stay allocated until the join: hold() keeps it until then. At most
// one section per lane is pending: a new section first joins the oldest when all lanes are busy,
// so what is held is at most that many sections' inputs. On the CPU, in a build without CUDA or
// when disabled, a section is a no-op and its work runs on the current stream.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/tensor.h"

namespace tg {

// Streams per device for side work (default kSideLanes). Four keep up with ViT-S/4's sampled
// linears at batch 128, whose selections take about twice as long as the main stream's work
// between two of them. Changing the number joins all pending side work first. ValueError outside
// [1, 64].
inline constexpr int kSideLanes = 4;
void set_side_work_lanes(int lanes);
int side_work_lanes();
// Whether a section has forked in this process (on any device and thread).
bool side_work_started();

class SideWork {
 public:
  // On a CUDA device with `enabled`: joins pending side work, then forks; the device's side stream
  // is the thread's current stream until the section ends.
  SideWork(Device device, bool enabled);
  // Ends the section: records its completion for the join and restores the current stream.
  ~SideWork();
  SideWork(const SideWork&) = delete;
  SideWork& operator=(const SideWork&) = delete;

  // Keeps `tensor` allocated until the section is joined (nothing to do for a no-op section).
  void hold(const Tensor& tensor);
  bool forked() const { return device_ >= 0; }
  // What join_side_work takes to join this section: increasing per device in fork order; 0 for a
  // no-op section.
  uint64_t ticket() const { return ticket_; }

 private:
  int device_ = -1;               // the CUDA device of a forked section; -1 for a no-op one
  int lane_ = 0;                  // which of the device's side streams it runs on
  uint64_t ticket_ = 0;
  uintptr_t previous_stream_ = 0; // the current stream at the fork, restored at the end
};

// Makes the current stream wait for the pending side work of `device` up to the section of
// `ticket` (sections are joined oldest first; all of them by default) and releases what they held.
// Whoever reads side work's results calls it first; a no-op on the CPU, for ticket 0 and when
// that section is joined already. BackendError when recording a section's completion failed.
void join_side_work(Device device, uint64_t ticket = UINT64_MAX);

}  // namespace tg
