// Times the block-5 engine's forward + backward (all six gradients, no input gradient: pool4
// maps are cached), then whole training steps (FineTuner: + a hidden-256 head, Adam) on random
// He-initialised weights and pool4-like inputs; prints one JSON line. Usage: bench_block5 [--batch
// 64] [--size 4] [--iters 5] [--threads 2]
// (--size is pool4's side: 4 for 64-pixel crops, 14 for 224).
#include <tbb/global_control.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "finetune/block5.h"
#include "finetune/finetune_step.h"
#include "head/head_model.h"
#include "head/linalg.h"

int main(int argc, char** argv) {
  int batch = 64, size = 4, iters = 5, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--batch")
      batch = value;
    else if (flag == "--size")
      size = value;
    else if (flag == "--iters")
      iters = value;
    else if (flag == "--threads")
      threads = value;
    else {
      std::fprintf(stderr, "bench_block5: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  vggcache::configure_blas_for_tbb();
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  std::mt19937 rng(3);
  std::normal_distribution<float> he(0.0f, std::sqrt(2.0f / 4608.0f)), unit(0.0f, 1.0f);
  auto fill = [&](size_t n, std::normal_distribution<float>& d) {
    std::vector<float> v(n);
    for (float& f : v) f = d(rng);
    return v;
  };
  vggcache::Block5 net;
  for (int i = 0; i < 3; ++i)
    net.set_layer(i, fill(512u * 512 * 9, he), std::vector<float>(512, 0.0f));
  std::vector<float> x = fill(static_cast<size_t>(batch) * 512 * size * size, unit);
  for (float& f : x) f = f > 0 ? f : 0;
  const std::vector<float> d_out = fill(static_cast<size_t>(batch) * 25088, unit);

  vggcache::Block5Activations act;
  // Forward and backward apart too, from the best round, to show where the time goes.
  double best = 1e30, best_fwd = 0, best_bwd = 0;
  for (int it = 0; it <= iters; ++it) {  // the first round warms up caches and TBB's workers
    const auto t0 = std::chrono::steady_clock::now();
    net.forward(x, batch, size, size, &act);
    const auto t1 = std::chrono::steady_clock::now();
    vggcache::Block5Gradients g = net.backward(act, d_out);
    const auto t2 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t2 - t0).count();
    if (it > 0 && s < best) {
      best = s;
      best_fwd = std::chrono::duration<double>(t1 - t0).count();
      best_bwd = std::chrono::duration<double>(t2 - t1).count();
    }
  }
  // The whole training step as train_head runs it: block 5 + a hidden-256 head + Adam on both.
  std::vector<int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = i % 2;
  vggcache::FineTuneConfig cfg;
  cfg.dropout = 0.5;
  vggcache::FineTuner ft(net, vggcache::init_head({vggcache::kBlock5OutputDim, 256, 2}, 1), cfg);
  double best_step = 1e30;
  for (int it = 0; it <= iters; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    ft.step(x, batch, size, size, labels.data(), it);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (it > 0 && s < best_step) best_step = s;
  }
  std::printf(
      "{\"crops_per_second\": %.2f, \"forward_ms\": %.1f, \"backward_ms\": %.1f, \"step_ms\": "
      "%.1f, \"step_crops_per_second\": %.2f, \"batch\": %d, "
      "\"size\": %d, \"threads\": %d, \"blas\": \"%s\"}\n",
      batch / best, 1e3 * best_fwd, 1e3 * best_bwd, 1e3 * best_step, batch / best_step, batch, size,
      threads, vggcache::blas_backend());
  return 0;
}
