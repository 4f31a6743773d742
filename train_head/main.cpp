// train_head: the classifier head trained on CPU (Eigen + OpenBLAS + TBB) from feature caches.
// parse → validate → load → loop → report; the logic lives in train_core (train_head/), over
// head_core (head/) and report_core (report/).
#include <fmt/core.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <limits>

#include "common/cli.h"
#include "common/error.h"
#include "common/file_util.h"
#include "head/linalg.h"
#include "train_head/batch_schedule.h"
#include "train_head/cache_checks.h"
#include "train_head/cli.h"
#include "train_head/compact_step.h"
#include "train_head/finetune_run.h"
#include "train_head/knn_run.h"
#include "train_head/probe.h"
#include "train_head/run_outputs.h"
#include "train_head/sweep/collect.h"
#include "train_head/sweep/finetune_sweep.h"
#include "train_head/sweep/runner.h"
#include "train_head/trainer.h"

int main(int argc, char** argv) {
  using namespace vggcache;
  // Heads allocate and free buffers of up to 25 MB (weights, Adam moments, kept copies): served
  // from the heap and kept there when freed (not mmapped and unmapped each time), a later head
  // or sweep wave reuses pages already touched instead of faulting in fresh ones, which costs
  // about 1 s per GB on the VMs measured here. The process is short-lived; its peak is the same.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  return run_tool("train_head", [&] {
    if (is_collect_command(argc, argv)) return collect_command(argc, argv);
    TrainParams p;
    SweepParams sweep;
    if (ParseStatus st = parse_train_args(argc, argv, &p, &sweep); !st.run) return st.exit_code;
    // Thread counts are set explicitly: TBB runs all parallel work; BLAS runs inside its tasks.
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, p.threads);
    configure_blas_for_tbb();
    // pool4 maps: block 5 is fine-tuned with the head (a caches pair of mixed cuts is refused
    // there, naming the pool5 one).
    const bool pool4 = p.knn.empty() &&
                       (cache_cut(p.train_cache) == "pool4" || cache_cut(p.test_cache) == "pool4");
    if (sweep.enabled)
      return pool4 ? run_finetune_sweep(p, sweep)  // train_head/sweep/finetune_sweep.h
                   : run_sweep(p, sweep);          // train_head/sweep/runner.h
    if (!p.knn.empty()) return run_knn(p);         // train_head/knn_run.h
    if (pool4) return run_finetune(p);             // train_head/finetune_run.h
    check_no_finetune_flags(p, p.train_cache);

    // Two prepool-f32 caches: train on compact vectors (same results, far fewer columns).
    // L-BFGS keeps its vectors in memory and scales the window means (train_head/probe.h), so it
    // reads window means rather than the map.
    const bool lbfgs = p.optimizer == "lbfgs";
    const VectorForm form =
        training_vectors(p.train_cache, p.test_cache, p.full_width, p.standardize || lbfgs);
    CacheSource train(p.train_cache, p.verify, form), test(p.test_cache, p.verify, form);
    check_training_caches(train.meta(), p.train_cache, test.meta(), p.test_cache);
    make_directories(p.out_dir);

    ImageSplit split = split_images(train.images(), p.val_fraction, p.seed);
    Standardizer standardizer;
    if (p.standardize) standardizer = compute_standardizer(train, split.train);
    HeadShape shape{static_cast<int>(train.meta().dim), p.hidden,
                    static_cast<int>(train.meta().classes.size())};
    TrainSetup setup;
    setup.train = &train;
    setup.test = &test;
    setup.train_images = split.train;
    setup.val_images = split.val;
    setup.standardizer = &standardizer;
    setup.init = init_head(shape, p.seed);
    setup.keep_final_weights = false;  // only the selected head is written
    fmt::print(
        "train_head: {} training images × {} crops ({} held out), {} test images × {} "
        "views, dim {}, {} classes, {} threads, {}\n",
        split.train.size(), train.crops(), split.val.size(), test.images().size(), test.crops(),
        shape.dim, shape.classes, p.threads, blas_backend());
    if (train.compact() && lbfgs)
      fmt::print(
          "train_head: L-BFGS probe on the {} window means (scaled: the 25088-column "
          "problem's solution)\n",
          train.compact()->dim());
    else if (train.compact())
      fmt::print("train_head: compact first layer: {}; Adam {}\n", compact_summary(train.compact()),
                 p.weight_decay == 0.0 ? "on the distinct columns" : "full width for weight decay");
    else if (train.meta().backbone != "vgg16")
      fmt::print(
          "train_head: compact first layer off: {} features (it needs VGG16's prepool-f32 map); "
          "dense first layer on the {}-d vectors\n",
          train.meta().backbone, shape.dim);

    MetricsLog log(p.out_dir);
    uint64_t peak_rss_anon = 0;
    setup.after_step = [&] { peak_rss_anon = std::max(peak_rss_anon, process_memory().rss_anon); };
    TrainOutcome out;
    if (lbfgs) {
      out = train_probe_lbfgs(p, setup, [&](const ProbeIteration& it) {
        peak_rss_anon = std::max(peak_rss_anon, process_memory().rss_anon);
        if (p.quiet) return;
        fmt::print(
            "lbfgs {:>4}/{}: objective {:.6g}  |grad|/n {:.3g}  step {:.3g}  {} evals  "
            "{:.0f} vectors/s\n",
            it.lbfgs.iteration, p.max_iter, it.lbfgs.f, it.lbfgs.grad_inf, it.lbfgs.step,
            it.lbfgs.evaluations,
            it.seconds > 0 ? it.rows * it.lbfgs.evaluations / it.seconds : 0.0);
        std::fflush(stdout);
      });
      log.append(out.epochs.front());
      if (!out.solver.value("converged", false))
        spdlog::warn(
            "lbfgs stopped by {} after {} iterations (|grad|/n {:.3g} > --tol {}): "
            "raise --max-iter or --l2",
            out.solver.value("stop", ""), out.solver.value("iterations", 0),
            out.solver.value("gradient_inf_norm", 0.0), p.tol);
    } else {
      out = run_training(p, setup, [&](const EpochMetrics& m) {
        log.append(m);
        if (!p.quiet) fmt::print("{}\n", progress_line(m, p.epochs));
        std::fflush(stdout);
      });
    }

    write_run_outputs(p.out_dir, p, train.meta(), test.meta(), split,
                      static_cast<int>(test.images().size()),
                      full_width_standardizer(standardizer, train), out, peak_rss_anon);
    write_predictions_and_report(p.out_dir, test.meta(), test.images(), out.selected_test);
    fmt::print("{}", final_table(out, train.meta().classes));
    fmt::print("train_head: {:.0f} vectors/s over {:.1f} s of training; outputs in {}\n",
               out.train_seconds > 0 ? out.train_vectors / out.train_seconds : 0.0,
               out.train_seconds, p.out_dir);
    return 0;
  });
}
