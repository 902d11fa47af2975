// The AMX grouped forward (see amx_forward.h).
#include "kernels/cpu/amx_forward.h"

#include <algorithm>
#include <cstring>

namespace moe {
namespace {

constexpr int64_t kGateUpPanelsPerTask = 4;  // 64 intermediate columns of gate and of up
constexpr int64_t kDownPairsPerTask = 2;     // 64 hidden columns

struct GroupScratch {
  AmxActivations x, act;
};

}  // namespace

void amx_forward(PackedEngine engine, ThreadPool& pool, std::span<AmxGroupWork> groups, int64_t hidden,
                 bool row_invariant) {
  if (groups.empty()) return;
  // Scratch: per group, x and act in hi + lo planes.
  std::vector<GroupScratch> scratch(groups.size());
  size_t total = 0;
  for (const AmxGroupWork& g : groups) {
    const int64_t n = static_cast<int64_t>(g.rows.size());
    total += 2 * (AmxActivations::elements(n, hidden) + AmxActivations::elements(n, g.expert->gate.rows));
  }
  thread_local AlignedBf16 buffer;
  if (buffer.size() < total) buffer = AlignedBf16(total);
  uint16_t* next = buffer.data();
  for (size_t i = 0; i < groups.size(); ++i) {
    const int64_t n = static_cast<int64_t>(groups[i].rows.size());
    const int64_t inter = groups[i].expert->gate.rows;
    GroupScratch& s = scratch[i];
    s.x.token_blocks = s.act.token_blocks = (n + 15) / 16;
    s.x.ksteps = (hidden + 31) / 32;
    s.act.ksteps = (inter + 31) / 32;
    const size_t xe = AmxActivations::elements(n, hidden), ae = AmxActivations::elements(n, inter);
    s.x.hi = next, s.x.lo = next + xe, next += 2 * xe;
    s.act.hi = next, s.act.lo = next + ae, next += 2 * ae;
  }

  // Inputs split into hi + lo (padding zeroed first: the reused buffer holds the last call's data).
  pool.parallel_for(static_cast<int64_t>(groups.size()), [&](int64_t i) {
    GroupScratch& s = scratch[static_cast<size_t>(i)];
    const size_t xe = static_cast<size_t>(s.x.token_blocks * s.x.ksteps) * 512;
    std::memset(s.x.hi, 0, 2 * xe * sizeof(uint16_t));
    amx_split_rows(groups[static_cast<size_t>(i)].rows.data(), static_cast<int>(groups[static_cast<size_t>(i)].rows.size()),
                   hidden, s.x);
  });

  // Tasks over all groups: (group, block of panels).
  auto run = [&](auto blocks_of, auto body) {
    std::vector<int64_t> first(groups.size() + 1, 0);
    for (size_t i = 0; i < groups.size(); ++i) first[i + 1] = first[i] + blocks_of(*groups[i].expert);
    pool.parallel_for(first.back(), [&](int64_t task) {
      const size_t i = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1);
      body(i, task - first[i]);
    });
  };
  run([](const AmxExpert& e) { return (e.gate.panels + kGateUpPanelsPerTask - 1) / kGateUpPanelsPerTask; },
      [&](size_t i, int64_t block) {
        const AmxExpert& e = *groups[i].expert;
        const int64_t p0 = block * kGateUpPanelsPerTask;
        amx_gate_up(engine, e, scratch[i].x, p0, std::min(p0 + kGateUpPanelsPerTask, e.gate.panels), scratch[i].act,
                    row_invariant);
      });
  run([](const AmxExpert& e) { return (e.down.panels / 2 + kDownPairsPerTask - 1) / kDownPairsPerTask; },
      [&](size_t i, int64_t block) {
        const AmxExpert& e = *groups[i].expert;
        const int64_t q0 = block * kDownPairsPerTask;
        amx_down(engine, e, scratch[i].act, static_cast<int64_t>(groups[i].rows.size()), q0,
                 std::min(q0 + kDownPairsPerTask, e.down.panels / 2), groups[i].y, hidden, row_invariant);
      });
}

}  // namespace moe
