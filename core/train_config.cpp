#include "core/train_config.h"

#include <cmath>
#include <set>

#include "common/error.h"

namespace cmaf::core {
namespace {

// One list of (INI name, member) pairs for both directions of the JSON mapping.
template <typename Config, typename Visitor>
void visit_fields(Config& c, Visitor&& v) {
  v("data", c.data);
  v("run-dir", c.run_dir);
  v("preset", c.preset);
  v("input-size", c.input_size);
  v("steps", c.steps);
  v("labeled-batch", c.labeled_batch);
  v("unlabeled-batch", c.unlabeled_batch);
  v("seed", c.seed);
  v("threads", c.threads);
  v("checkpoint-every", c.checkpoint_every);
  v("keep-checkpoints", c.keep_checkpoints);
  v("resume", c.resume);
  v("pool-refresh-every", c.pool_refresh_every);
  v("confidence-threshold", c.confidence_threshold);
  v("pool-thresholds", c.pool_thresholds);
  v("pool-prior-ratio", c.pool_prior_ratio);
  v("pool-recalibrate-bn", c.pool_recalibrate_bn);
  v("optimizer", c.optimizer);
  v("lr", c.lr);
  v("weight-decay", c.weight_decay);
  v("momentum", c.momentum);
  v("schedule", c.schedule);
  v("warmup-steps", c.warmup_steps);
  v("poly-power", c.poly_power);
  v("clip-grad-norm", c.clip_grad_norm);
  v("accumulate-steps", c.accumulate_steps);
  v("bf16", c.bf16);
  v("channels-last", c.channels_last);
  v("device", c.device);
  v("non-finite", c.non_finite);
  v("ema-decay", c.ema_decay);
  v("ramp-up-steps", c.ramp_up_steps);
  v("unlabeled-start-step", c.unlabeled_start_step);
  v("ldc", c.use_ldc);
  v("ldc-fixed-weight", c.ldc_fixed_weight);
  v("dual-step", c.dual_step);
  v("constraint-tolerance", c.constraint_tolerance);
  v("multiplier-max", c.multiplier_max);
  v("contrastive-weight", c.contrastive_weight);
  v("separate-strong-forward", c.separate_strong_forward);
  v("foreground-fraction", c.foreground_fraction);
  v("site-weights", c.site_weights);
  v("sync-batch-norm", c.sync_batch_norm);
  v("bucket-cap-mib", c.bucket_cap_mib);
  v("first-bucket-mib", c.first_bucket_mib);
  v("bf16-allreduce", c.bf16_allreduce);
  v("loader-threads", c.loader_threads);
  v("loader-queue", c.loader_queue);
  v("cache-budget-mib", c.cache_budget_mib);
  v("augment", c.augment.enabled);
  v("flip-probability", c.augment.flip_probability);
  v("rot90-probability", c.augment.rot90_probability);
  v("rotation-probability", c.augment.rotation_probability);
  v("max-rotation-degrees", c.augment.max_rotation_degrees);
  v("scale-probability", c.augment.scale_probability);
  v("min-scale", c.augment.min_scale);
  v("max-scale", c.augment.max_scale);
  v("intensity-probability", c.augment.intensity_probability);
  v("strong-intensity-probability", c.augment.strong_intensity_probability);
  v("max-brightness", c.augment.max_brightness);
  v("max-contrast", c.augment.max_contrast);
  v("min-gamma", c.augment.min_gamma);
  v("max-gamma", c.augment.max_gamma);
  v("max-noise-std", c.augment.max_noise_std);
  v("val-every", c.val_every);
  v("val-max-slices", c.val_max_slices);
  v("log-every", c.log_every);
  v("fingerprint-every", c.fingerprint_every);
  v("stall-seconds", c.stall_seconds);
}

template <typename T>
nlohmann::json to_json_value(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    return to_string(value);
  } else {
    return value;
  }
}

template <typename T>
void from_json_value(const nlohmann::json& j, T& value, const std::string& origin, const std::string& key) {
  try {
    if constexpr (std::is_same_v<T, OptimizerKind>) {
      value = optimizer_from_string(j.get<std::string>());
    } else if constexpr (std::is_same_v<T, ScheduleKind>) {
      value = schedule_from_string(j.get<std::string>());
    } else if constexpr (std::is_same_v<T, NonFinitePolicy>) {
      value = non_finite_from_string(j.get<std::string>());
    } else {
      value = j.get<T>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(origin, key, str("'", j.dump(), "': ", e.what()));
  } catch (const InputError& e) {
    throw InputError(origin, key, e.what());
  }
}

void positive(int64_t value, const char* option) {
  if (value < 1) throw InputError(str("--", option), "", str(value, ", expected >= 1"));
}

void non_negative(double value, const char* option) {
  if (!(value >= 0.0)) throw InputError(str("--", option), "", str(value, ", expected >= 0"));
}

}  // namespace

std::string to_string(OptimizerKind kind) { return kind == OptimizerKind::kAdamW ? "adamw" : "sgd"; }
std::string to_string(ScheduleKind kind) { return kind == ScheduleKind::kPoly ? "poly" : "cosine"; }
std::string to_string(NonFinitePolicy policy) { return policy == NonFinitePolicy::kSkip ? "skip" : "stop"; }

OptimizerKind optimizer_from_string(const std::string& text) {
  if (text == "adamw") return OptimizerKind::kAdamW;
  if (text == "sgd") return OptimizerKind::kSgdNesterov;
  throw InputError("--optimizer", "", str("'", text, "', expected adamw or sgd (Nesterov)"));
}

ScheduleKind schedule_from_string(const std::string& text) {
  if (text == "poly") return ScheduleKind::kPoly;
  if (text == "cosine") return ScheduleKind::kCosine;
  throw InputError("--schedule", "", str("'", text, "', expected poly or cosine"));
}

NonFinitePolicy non_finite_from_string(const std::string& text) {
  if (text == "skip") return NonFinitePolicy::kSkip;
  if (text == "stop") return NonFinitePolicy::kStop;
  throw InputError("--non-finite", "", str("'", text, "', expected skip or stop"));
}

model::CmaformerConfig TrainConfig::model() const {
  model::CmaformerConfig config = model::preset_config(preset);
  if (input_size > 0) config.input_size = input_size;
  return config;
}

void TrainConfig::validate() const {
  if (data.empty()) throw InputError("--data", "", "required: the dataset folder (cmaformer prep or synth output)");
  if (run_dir.empty()) throw InputError("--run-dir", "", "required: the folder for checkpoints, logs and metrics");
  const model::CmaformerConfig m = model();
  model::check_input_size(m.input_size, m.input_size);
  positive(steps, "steps");
  positive(labeled_batch, "labeled-batch");
  positive(accumulate_steps, "accumulate-steps");
  if (unlabeled_batch < 0) throw InputError("--unlabeled-batch", "", str(unlabeled_batch, ", expected >= 0"));
  positive(checkpoint_every, "checkpoint-every");
  positive(keep_checkpoints, "keep-checkpoints");
  if (resume.empty()) throw InputError("--resume", "", "empty, expected auto, none or a checkpoint folder");
  if (!(confidence_threshold >= 0.0 && confidence_threshold < 1.0)) {
    throw InputError("--confidence-threshold", "", str(confidence_threshold, ", expected [0, 1)"));
  }
  if (pool_refresh_every < 0) throw InputError("--pool-refresh-every", "", str(pool_refresh_every, ", expected >= 0"));
  if (pool_thresholds != "fixed" && pool_thresholds != "adaptive") {
    throw InputError("--pool-thresholds", "", str("'", pool_thresholds, "', expected fixed or adaptive"));
  }
  if (!(pool_prior_ratio == 0.0 || pool_prior_ratio >= 1.0)) {
    throw InputError("--pool-prior-ratio", "", str(pool_prior_ratio, ", expected 0 (off) or >= 1"));
  }
  if (!(lr > 0.0)) throw InputError("--lr", "", str(lr, ", expected > 0"));
  if (device != "cpu" && device != "cuda") throw InputError("--device", "", str("'", device, "', expected cpu or cuda"));
  if (device == "cuda" && bf16) {
    throw InputError("--bf16", "", "autocast is implemented for the CPU only: use fp32 with --device cuda");
  }
  non_negative(weight_decay, "weight-decay");
  non_negative(momentum, "momentum");
  non_negative(poly_power, "poly-power");
  non_negative(clip_grad_norm, "clip-grad-norm");
  if (warmup_steps < 0) throw InputError("--warmup-steps", "", str(warmup_steps, ", expected >= 0"));
  if (!(ema_decay >= 0.0 && ema_decay < 1.0)) throw InputError("--ema-decay", "", str(ema_decay, ", expected [0, 1)"));
  if (ramp_up_steps < 0) throw InputError("--ramp-up-steps", "", str(ramp_up_steps, ", expected >= 0"));
  if (unlabeled_start_step < 0 || unlabeled_start_step >= steps) {
    throw InputError("--unlabeled-start-step", "",
                     str(unlabeled_start_step, ", expected 0 <= N < --steps (", steps, ")"));
  }
  non_negative(ldc_fixed_weight, "ldc-fixed-weight");
  non_negative(dual_step, "dual-step");
  non_negative(constraint_tolerance, "constraint-tolerance");
  non_negative(multiplier_max, "multiplier-max");
  non_negative(contrastive_weight, "contrastive-weight");
  if (!(foreground_fraction >= 0.0 && foreground_fraction <= 1.0)) {
    throw InputError("--foreground-fraction", "", str(foreground_fraction, ", expected [0, 1]"));
  }
  parsed_site_weights();
  positive(loader_threads, "loader-threads");
  positive(loader_queue, "loader-queue");
  if (cache_budget_mib < 0) throw InputError("--cache-budget-mib", "", str(cache_budget_mib, ", expected >= 0"));
  if (val_every < 0 || val_max_slices < 0) throw InputError("--val-every", "--val-max-slices", "expected >= 0");
  positive(log_every, "log-every");
  positive(fingerprint_every, "fingerprint-every");
  if (bucket_cap_mib < 1 || bucket_cap_mib > (1 << 20)) {
    throw InputError("--bucket-cap-mib", "", str(bucket_cap_mib, ", expected 1 to 1048576 MiB"));
  }
  if (!(first_bucket_mib >= 1.0 / 1024 && first_bucket_mib <= 1 << 20)) {
    throw InputError("--first-bucket-mib", "", str(first_bucket_mib, ", expected 1/1024 (1 KiB) to 1048576 MiB"));
  }
  if (!(stall_seconds >= 1.0 && stall_seconds <= 1e6)) {
    throw InputError("--stall-seconds", "", str(stall_seconds, ", expected 1 to 1000000 seconds"));
  }
  datastore::check_augment_options(augment);
}

std::map<std::string, double> TrainConfig::parsed_site_weights() const {
  std::map<std::string, double> out;
  size_t begin = 0;
  while (!site_weights.empty() && begin <= site_weights.size()) {
    const size_t end = std::min(site_weights.find(',', begin), site_weights.size());
    const std::string item = site_weights.substr(begin, end - begin);
    const size_t colon = item.rfind(':');
    double weight = -1.0;
    if (colon != std::string::npos && colon > 0) {
      try {
        size_t used = 0;
        weight = std::stod(item.substr(colon + 1), &used);
        if (used != item.size() - colon - 1) weight = -1.0;
      } catch (const std::exception&) {
        weight = -1.0;
      }
    }
    if (!(weight > 0.0) || !std::isfinite(weight)) {
      throw InputError("--site-weights", "", str("'", item, "' in '", site_weights, "': expected SITE:WEIGHT with WEIGHT > 0"));
    }
    out[item.substr(0, colon)] = weight;
    begin = end + 1;
  }
  return out;
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  visit_fields(*this, [&](const char* key, const auto& value) { j[key] = to_json_value(value); });
  return j;
}

TrainConfig TrainConfig::from_json(const nlohmann::json& json, const std::string& origin) {
  if (!json.is_object()) throw InputError(origin, "", "expected a JSON object of training options");
  TrainConfig c;
  std::set<std::string> known;
  visit_fields(c, [&](const char* key, auto& value) {
    known.insert(key);
    if (json.contains(key)) from_json_value(json.at(key), value, origin, key);
  });
  for (const auto& item : json.items()) {
    if (known.count(item.key()) == 0) throw InputError(origin, item.key(), "unknown training option");
  }
  return c;
}

}  // namespace cmaf::core
