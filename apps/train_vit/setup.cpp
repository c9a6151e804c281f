// Datasets, model, backward strategies and optimizer of a train_vit run.
#include "apps/train_vit/setup.h"

#include "apps/vit/strategies.h"


namespace tg::train {

namespace {

// Per-channel mean and std of pixel / 255 over the training set (the usual published values).
void set_normalization(const std::string& dataset, data::AugmentConfig& augment) {
  if (dataset == "fashion-mnist") {
    augment.mean = {0.2860f};
    augment.std = {0.3530f};
  } else if (dataset == "cifar10") {
    augment.mean = {0.4914f, 0.4822f, 0.4465f};
    augment.std = {0.2470f, 0.2435f, 0.2616f};
  } else if (dataset == "cifar100" || dataset == "cifar100-coarse") {
    augment.mean = {0.5071f, 0.4865f, 0.4409f};
    augment.std = {0.2673f, 0.2564f, 0.2762f};
  } else {  // synthetic: uniform prototypes plus noise
    augment.mean = {0.5f, 0.5f, 0.5f};
    augment.std = {0.3f, 0.3f, 0.3f};
  }
}

// Sizes of the synthetic benchmark set (CIFAR's geometry).
constexpr int64_t kSyntheticTrain = 10000, kSyntheticTest = 2000, kSyntheticClasses = 10;

data::ImageDataset rows(const data::ImageDataset& d, int64_t start, int64_t count) {
  data::ImageDataset out = d;
  out.images = d.images.raw_narrow(0, start, count);
  out.labels = d.labels.raw_narrow(0, start, count);
  return out;
}

}  // namespace

TrainData load_data(const Options& o) {
  TrainData d;
  const std::string dir = data_directory(o);
  if (o.dataset == "fashion-mnist") {
    d.train = data::load_fashion_mnist(dir, data::Split::train);
    d.test = data::load_fashion_mnist(dir, data::Split::test);
  } else if (o.dataset == "cifar10") {
    d.train = data::load_cifar10(dir, data::Split::train);
    d.test = data::load_cifar10(dir, data::Split::test);
  } else if (o.dataset == "cifar100" || o.dataset == "cifar100-coarse") {
    const bool coarse = o.dataset == "cifar100-coarse";
    d.train = data::load_cifar100(dir, data::Split::train, coarse);
    d.test = data::load_cifar100(dir, data::Split::test, coarse);
  } else {
    // One draw split in two, so that both splits share the class prototypes.
    const data::ImageDataset all =
        data::make_synthetic(kSyntheticTrain + kSyntheticTest, 3, 32, kSyntheticClasses, o.seed);
    d.train = rows(all, 0, kSyntheticTrain);
    d.test = rows(all, kSyntheticTrain, kSyntheticTest);
  }
  if (o.train_subset > 0) d.train = data::take_first(d.train, o.train_subset);
  if (o.test_subset > 0) d.test = data::take_first(d.test, o.test_subset);

  d.train_loader.batch_size = o.batch_size;
  d.train_loader.seed = o.seed;
  // Every rank draws the epoch's order from the same seed and reads its own part of it.
  d.train_loader.shard = {o.launch.rank, o.launch.world_size};
  const bool crop_flip = o.augment == "crop-flip" || (o.augment == "auto" && o.dataset.rfind("cifar", 0) == 0);
  if (crop_flip) {
    d.train_loader.augment.crop_padding = 4;
    d.train_loader.augment.horizontal_flip = true;
  }
  d.train_loader.augment.output_size = o.img;
  d.train_loader.augment.trivial_augment = o.trivial_augment;
  set_normalization(o.dataset, d.train_loader.augment);

  d.test_loader.batch_size = o.batch_size;
  d.test_loader.shard = d.train_loader.shard;
  d.test_loader.shuffle = false;
  d.test_loader.drop_last = false;
  d.test_loader.augment.output_size = o.img;
  d.test_loader.augment.mean = d.train_loader.augment.mean;
  d.test_loader.augment.std = d.train_loader.augment.std;
  return d;
}

std::unique_ptr<vit::VisionTransformer> build_model(const Options& o, int64_t channels, int64_t classes,
                                                    const vit::MemoryPlan* plan) {
  vit::VitConfig config = vit::preset(o.model);
  config.image_size = o.img;
  config.patch_size = o.patch;
  config.in_channels = channels;
  config.num_classes = classes;
  config.depth = model_depth(o);
  config.fused_attention = o.attention == "fused";
  config.drop_path_rate = o.drop_path;
  auto model = std::make_unique<vit::VisionTransformer>(config, o.resolved_device, o.seed);
  if (plan) {
    StrategyConfig sampling = strategy_config(o);
    sampling.kind = StrategyKind::wta_crs;
    vit::apply_plan(*model, *plan, sampling);
    return model;
  }
  vit::install_strategies(*model, strategy_config(o), strategy_targets(o), strategy_blocks(o));
  for (const auto& block : model->blocks) block->mlp->set_recompute_gelu(o.recompute_gelu);
  for (int64_t b : checkpointed_blocks(o)) model->blocks[static_cast<size_t>(b)]->set_checkpoint(true);
  for (const auto& block : model->blocks) block->set_recompute_norms(o.recompute_norms);
  return model;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const Options& o, const vit::VisionTransformer& model) {
  std::vector<nn::ParamSpec> specs = nn::decay_specs(model.named_parameters(), model.no_weight_decay());
  if (o.optimizer == "sgd") {
    nn::SgdOptions options;
    options.lr = o.lr;
    options.weight_decay = o.weight_decay;
    return std::make_unique<nn::SGD>(std::move(specs), options);
  }
  nn::AdamOptions options;
  options.lr = o.lr;
  options.weight_decay = o.weight_decay;
  options.decoupled_weight_decay = o.optimizer == "adamw";
  return std::make_unique<nn::Adam>(std::move(specs), options);
}

}  // namespace tg::train
