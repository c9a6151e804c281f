// The timm interchange path on the CPU with a tiny ViT: save_weights/load_weights round trips to
// identical logits, and the vit_crosscheck executable writes one step's logits, loss and gradients, and rejects a wrong-shaped weight
// naming the key and both shapes. The timm side itself runs on the GPU machine
// (tests/pytorch/crosscheck_timm.py).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "nn/safetensors.h"
#include "tests/apps/vit_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;

namespace {

// A folder of its own per test case and process (parallel CTest runs never share files),
// removed at the end of the test case.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The executable where CMake built it, or at the same place relative to this test executable.
std::string crosscheck_exe() { return test::built_executable(VIT_CROSSCHECK_EXE, VIT_CROSSCHECK_FROM_TEST); }

// The small test config as vit_crosscheck flags.
std::string config_flags(const vit::VitConfig& c) {
  std::ostringstream flags;
  flags << " --dim " << c.dim << " --depth " << c.depth << " --heads " << c.heads << " --patch " << c.patch_size
        << " --img " << c.image_size << " --classes " << c.num_classes << " --channels " << c.in_channels;
  return flags.str();
}

struct Batch {
  Tensor images, labels;
};

Batch write_batch(const vit::VitConfig& c, const std::string& path) {
  const int64_t b = 3;
  Batch batch{test::random_tensor({b, c.in_channels, c.image_size, c.image_size}, 11, -1, 1),
              from_vector(std::vector<int64_t>{1, 7, 3}, {b})};
  nn::save_safetensors(path, {{"images", batch.images}, {"labels", batch.labels}});
  return batch;
}

// Runs a shell command; returns its exit status and leaves stderr in `err_path`.
int run_command(const std::string& args, const std::string& err_path) {
  std::ostringstream command;  // a stream rather than string + (GCC 12 warns falsely on the latter)
  command << '"' << crosscheck_exe() << '"' << args << " >/dev/null 2>\"" << err_path << '"';
  const int status = std::system(command.str().c_str());
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("save_weights then load_weights into a differently seeded ViT gives identical logits") {
  const vit::VitConfig c = test::small_vit_config();
  const ScratchDir dir("tg_vit_roundtrip");
  const std::string path = dir.file("roundtrip.safetensors");
  const vit::VisionTransformer saved(c, Device::cpu(), 1);
  vit::save_weights(saved, path);
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.tensors.size() == saved.named_parameters().size());

  vit::VisionTransformer loaded(c, Device::cpu(), 2);
  const Tensor images = test::random_tensor({2, c.in_channels, c.image_size, c.image_size}, 3, -1, 1);
  const std::vector<float> expected = saved.forward(images).to_vector<float>();
  CHECK(loaded.forward(images).to_vector<float>() != expected);
  vit::load_weights(loaded, path);
  CHECK(loaded.forward(images).to_vector<float>() == expected);
}

TEST_CASE("vit_crosscheck writes logits, loss and every gradient of one step, as computed in process") {
  const vit::VitConfig c = test::small_vit_config();
  const ScratchDir dir("tg_vit_crosscheck_step");
  const std::string init = dir.file("init.safetensors"), out = dir.file("out.safetensors"),
                    batch_path = dir.file("batch.safetensors"), err = dir.file("err.txt");
  const Batch batch = write_batch(c, batch_path);
  REQUIRE(run_command(config_flags(c) + " --seed 5 --save-init " + init + " --batch " + batch_path + " --out " + out +
                          " --device cpu",
                      err) == 0);

  // The same step in process, from the weights the executable saved.
  vit::VisionTransformer model(c, Device::cpu(), 99);
  vit::load_weights(model, init);
  const Tensor logits = model.forward(batch.images);
  const Tensor loss = cross_entropy(logits, batch.labels);
  backward(loss);
  const nn::SafetensorsFile result = nn::load_safetensors(out);
  CHECK(result.tensors.size() == 2 + model.named_parameters().size());
  CHECK(result.tensors.at("logits").shape() == Shape{3, c.num_classes});
  CHECK(result.tensors.at("logits").to_vector<float>() == logits.to_vector<float>());
  CHECK(result.tensors.at("loss").item() == loss.item());
  for (const auto& [name, p] : model.named_parameters()) {
    CAPTURE(name);
    CHECK(result.tensors.at("grad." + name).to_vector<float>() == p.grad().to_vector<float>());
  }
}

TEST_CASE("vit_crosscheck rejects a wrong-shaped weight, naming the key and both shapes") {
  const vit::VitConfig c = test::small_vit_config();
  const ScratchDir dir("tg_vit_crosscheck_errors");
  const std::string weights = dir.file("bad.safetensors"), batch_path = dir.file("batch.safetensors"),
                    err = dir.file("err.txt"), never = dir.file("never.safetensors");
  write_batch(c, batch_path);
  nn::StateDict state = vit::VisionTransformer(c, Device::cpu(), 1).state_dict();
  state["head.weight"] = zeros({7, c.dim});
  nn::save_safetensors(weights, state);
  const std::string args = config_flags(c) + " --weights " + weights + " --batch " + batch_path + " --out " + never;
  CHECK(run_command(args, err) == 1);
  CHECK(read_text(err) ==
        "vit_crosscheck: load_state_dict: key 'head.weight' has shape [7, 192] in the state dict, but the model "
        "expects [10, 192]\n");
  CHECK_FALSE(std::filesystem::exists(never));

  // A missing file is a usage error (CLI11's message and non-zero code), not a silent default.
  CHECK(run_command(config_flags(c) + " --weights " + dir.file("absent.safetensors"), err) != 0);
  CHECK(run_command(config_flags(c), err) == 1);
  CHECK(read_text(err) ==
        "vit_crosscheck: nothing to do: give --batch and --out (a training step), --save-init, or both\n");
}
