// The balance benchmark (see bench_balance.h).
#include "cli/bench_balance.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "cli/bench_eplb.h"
#include "runtime/placement/balancer.h"

namespace moe {
namespace {

// splitmix64: a small seeded generator whose sequence is the same on every platform.
class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }  // [0, 1)

 private:
  uint64_t state_;
};

struct Figures {
  double mean = 1.0;
  double max = 1.0;
  int changed = 0;
  double ms = -1.0;
};

Figures contiguous_figures(const std::vector<std::vector<double>>& loads, const std::vector<SlotGrid>& grids) {
  Figures f;
  double sum = 0.0;
  for (size_t l = 0; l < loads.size(); ++l) {
    LayerPlan p = evaluate_layer(loads[l], grids[l], grids[l]);
    sum += p.imbalance;
    f.max = l == 0 ? p.imbalance : std::max(f.max, p.imbalance);
  }
  f.mean = sum / static_cast<double>(loads.size());
  return f;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string changed_text(int changed, int total) {
  return std::to_string(changed) + " (" + fixed(100.0 * changed / total, 1) + "%)";
}

void print_row(std::ostream& out, const std::string& window, const std::string& who, const Figures& f, int total,
               const std::string& vs_ours) {
  out << std::left << std::setw(11) << window << std::setw(13) << who << std::setw(10) << fixed(f.mean, 3)
      << std::setw(10) << fixed(f.max, 3) << std::setw(18) << changed_text(f.changed, total) << std::setw(10)
      << (f.ms < 0 ? std::string("-") : fixed(f.ms, 1)) << vs_ours << "\n";
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// EPLB on every layer: grids and figures (slots changed vs `previous`, reordering inside a worker free).
struct EplbRun {
  std::vector<SlotGrid> grids;
  Figures f;
};

EplbRun run_eplb(const std::vector<std::vector<double>>& loads, const std::vector<SlotGrid>& previous, int workers,
                 int slots, const EplbOptions& options) {
  EplbRun r;
  double sum = 0.0;
  for (size_t l = 0; l < loads.size(); ++l) {
    EplbLayer layer = eplb_layer(loads[l], workers, slots, options);
    sum += layer.imbalance;
    r.f.max = l == 0 ? layer.imbalance : std::max(r.f.max, layer.imbalance);
    r.f.changed += eplb_slots_changed(previous[l], layer.grid);
    r.grids.push_back(std::move(layer.grid));
  }
  r.f.mean = sum / static_cast<double>(loads.size());
  return r;
}

}  // namespace

std::vector<std::vector<double>> zipf_loads(int layers, int experts, double s, double tokens, uint64_t seed) {
  double harmonic = 0.0;
  for (int k = 1; k <= experts; ++k) harmonic += std::pow(k, -s);
  SplitMix rng(seed);
  std::vector<std::vector<double>> loads(layers, std::vector<double>(experts));
  for (auto& row : loads) {
    std::vector<int> rank(experts);
    for (int e = 0; e < experts; ++e) rank[e] = e;
    for (int i = experts - 1; i > 0; --i) std::swap(rank[i], rank[rng.next() % static_cast<uint64_t>(i + 1)]);
    for (int e = 0; e < experts; ++e) row[e] = tokens * std::pow(rank[e] + 1, -s) / harmonic;
  }
  return loads;
}

std::vector<std::vector<double>> drifted_loads(const std::vector<std::vector<double>>& loads, double drift, uint64_t seed) {
  SplitMix rng(seed ^ 0xd1f7d1f7d1f7d1f7ull);
  auto out = loads;
  for (auto& row : out)
    for (double& v : row) v *= 1.0 + drift * (2.0 * rng.uniform() - 1.0);
  return out;
}

std::vector<std::vector<double>> read_load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open load file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  std::string body = text.str();
  std::vector<std::vector<double>> rows;
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && body[first] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(body);
      rows = j.get<std::vector<std::vector<double>>>();
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("load file '" + path + "' is not a JSON array of number arrays: " + e.what());
    }
  } else {
    std::istringstream lines(body);
    std::string line;
    int line_no = 0;
    while (std::getline(lines, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos || line[line.find_first_not_of(" \t\r")] == '#') continue;
      std::vector<double> row;
      std::istringstream cells(line);
      std::string cell;
      while (std::getline(cells, cell, ',')) {
        try {
          size_t used = 0;
          row.push_back(std::stod(cell, &used));
          if (cell.find_first_not_of(" \t\r", used) != std::string::npos) throw std::invalid_argument(cell);
        } catch (const std::exception&) {
          throw std::runtime_error("load file '" + path + "' line " + std::to_string(line_no) + ": '" + cell +
                                   "' is not a number");
        }
      }
      rows.push_back(std::move(row));
    }
  }
  if (rows.empty() || rows[0].empty()) throw std::runtime_error("load file '" + path + "' holds no loads");
  for (size_t l = 0; l < rows.size(); ++l) {
    if (rows[l].size() != rows[0].size())
      throw std::runtime_error("load file '" + path + "' row " + std::to_string(l) + " has " +
                               std::to_string(rows[l].size()) + " values, expected " + std::to_string(rows[0].size()));
    for (double v : rows[l])
      if (!(v >= 0.0) || std::isinf(v))
        throw std::runtime_error("load file '" + path + "' row " + std::to_string(l) + " holds " + std::to_string(v) +
                                 ", expected finite loads >= 0");
  }
  return rows;
}

int run_bench_balance(const BenchBalanceOptions& o, std::ostream& out) {
  using Clock = std::chrono::steady_clock;
  auto loads = o.load_file.empty() ? zipf_loads(o.layers, o.experts, o.zipf, o.tokens, o.seed) : read_load_file(o.load_file);
  const int L = static_cast<int>(loads.size()), E = static_cast<int>(loads[0].size());
  const int per_layer = o.workers * o.slots, total = L * per_layer;
  auto drifted = drifted_loads(loads, o.drift, o.seed);
  std::vector<SlotGrid> contiguous(L, contiguous_grid(E, o.workers, o.slots));

  auto plan = [&](const std::vector<std::vector<double>>& window, const std::vector<SlotGrid>& from, BalancePlan& result) {
    auto t0 = Clock::now();
    result = balance_layers(window, from);
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  // EPLB's shape: hierarchical over nodes of 8 workers (as DeepSeek's 8 GPUs a node) when that divides.
  EplbOptions hier{o.eplb_groups, o.eplb_nodes};
  if (hier.nodes == 0) hier.nodes = o.workers % 8 == 0 && o.eplb_groups % (o.workers / 8) == 0 ? o.workers / 8 : 1;
  const EplbOptions global{1, 1};

  // Planning time: ours, EPLB hierarchical, EPLB global, alternated `pairs` times on each window; the
  // figures are the median times and the median of the per-pair ratios.
  BalancePlan first, second;
  Figures ours1, ours2;
  EplbRun hier1, hier2, glob1, glob2;
  std::vector<double> t_ours1, t_ours2, t_h1, t_h2, t_g1, t_g2;
  auto timed = [](auto&& f) {
    auto t0 = Clock::now();
    f();
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  std::vector<SlotGrid> first_grids;
  for (int pair = 0; pair < o.pairs; ++pair) {
    t_ours1.push_back(plan(loads, contiguous, first));
    t_h1.push_back(timed([&] { hier1 = run_eplb(loads, contiguous, o.workers, o.slots, hier); }));
    t_g1.push_back(timed([&] { glob1 = run_eplb(loads, contiguous, o.workers, o.slots, global); }));
    first_grids.clear();
    for (const auto& layer : first.layers) first_grids.push_back(layer.grid);
    t_ours2.push_back(plan(drifted, first_grids, second));
    t_h2.push_back(timed([&] { hier2 = run_eplb(drifted, hier1.grids, o.workers, o.slots, hier); }));
    t_g2.push_back(timed([&] { glob2 = run_eplb(drifted, glob1.grids, o.workers, o.slots, global); }));
  }
  auto ratio = [](const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> r;
    for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
    return median_of(r);
  };
  ours1.ms = median_of(t_ours1), ours2.ms = median_of(t_ours2);
  hier1.f.ms = median_of(t_h1), hier2.f.ms = median_of(t_h2), glob1.f.ms = median_of(t_g1), glob2.f.ms = median_of(t_g2);
  ours1.mean = first.mean_imbalance, ours1.max = first.max_imbalance, ours1.changed = first.slots_changed;
  ours2.mean = second.mean_imbalance, ours2.max = second.max_imbalance, ours2.changed = second.slots_changed;
  Figures base1 = contiguous_figures(loads, contiguous), base2 = contiguous_figures(drifted, contiguous);

  out << "moectl bench balance: " << L << " layers x " << E << " experts on " << o.workers << " workers x " << o.slots
      << " slots (" << per_layer << " slots per layer, " << total << " in all), ";
  if (o.load_file.empty())
    out << "Zipf " << o.zipf << " seed " << o.seed;
  else
    out << "loads from " << o.load_file;
  out << "; window 2: loads x (1 +- " << o.drift << ") from window 1's plan\n";
  out << "imbalance = max worker load / mean worker load per layer; slots changed vs the previous placement\n";
  out << "EPLB = DeepSeek's EPLB implemented here from its description (cli/bench_eplb.h), run now on the same loads:\n"
      << "  hier = " << hier.groups << " expert groups packed onto " << hier.nodes << " node(s) of " << o.workers / hier.nodes
      << " workers,\n  then replicate + pack per node; global = one node, one group. Copies take equal shares; its slots changed\n"
      << "  let a worker reorder its own slots (its plans are laid out afresh), ours count slot by slot\n"
      << "plan ms: median of " << o.pairs << " runs, ours and EPLB alternated; 'x ours' = median of the per-run ratios\n\n";
  out << std::left << std::setw(11) << "window" << std::setw(13) << "placement" << std::setw(10) << "imb mean"
      << std::setw(10) << "imb max" << std::setw(18) << "slots changed" << std::setw(10) << "plan ms" << "plan ms x ours\n";
  print_row(out, "1", "balancer", ours1, total, "");
  print_row(out, "1", "EPLB hier", hier1.f, total, fixed(ratio(t_h1, t_ours1), 2) + "x");
  print_row(out, "1", "EPLB global", glob1.f, total, fixed(ratio(t_g1, t_ours1), 2) + "x");
  print_row(out, "1", "contiguous", base1, total, "");
  print_row(out, "2 (drift)", "balancer", ours2, total, "");
  print_row(out, "2 (drift)", "EPLB hier", hier2.f, total, fixed(ratio(t_h2, t_ours2), 2) + "x");
  print_row(out, "2 (drift)", "EPLB global", glob2.f, total, fixed(ratio(t_g2, t_ours2), 2) + "x");
  print_row(out, "2 (drift)", "contiguous", base2, total, "");

  const bool balanced = ours1.mean <= 1.05 && ours2.mean <= 1.05;
  const bool few_moves = ours2.changed <= 0.05 * total;
  const bool fast = ours1.ms < 1000.0 && ours2.ms < 1000.0;
  const double eplb_best1 = std::min(hier1.f.mean, glob1.f.mean), eplb_best2 = std::min(hier2.f.mean, glob2.f.mean);
  const bool vs_eplb_balance = ours1.mean <= eplb_best1 && ours2.mean <= eplb_best2;
  const bool vs_eplb_moves = ours2.changed < std::min(hier2.f.changed, glob2.f.changed);
  out << std::left << "\ntargets: mean imbalance <= 1.05 on both windows: " << (balanced ? "met" : "MISSED")
      << "; second plan changes <= 5% of slots: " << (few_moves ? "met" : "MISSED")
      << "; each plan < 1000 ms: " << (fast ? "met" : "MISSED") << "\n"
      << "vs EPLB (same run): mean imbalance <= the better EPLB's on both windows: " << (vs_eplb_balance ? "met" : "MISSED")
      << " (" << fixed(ours1.mean, 3) << " vs " << fixed(eplb_best1, 3) << ", " << fixed(ours2.mean, 3) << " vs "
      << fixed(eplb_best2, 3) << "); second plan changes fewer slots than either EPLB: " << (vs_eplb_moves ? "met" : "MISSED")
      << "\n";
  return 0;
}

}  // namespace moe
