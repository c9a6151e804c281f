// DataParallel (data_parallel.h): rendezvous, communicator, parameter sharing and checks, the
// loop's reductions, and the end of the job.
#include "apps/train_vit/data_parallel.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "dist/consistency.h"
#include "dist/rendezvous.h"
#include "dist/store_communicator.h"

namespace tg::train {

namespace {
constexpr const char* kReportPrefix = "tapegrad/train_vit/";
constexpr const char* kFinishedPrefix = "tapegrad/finished/";
}  // namespace

DataParallel::DataParallel(const Options& o, const CommunicatorFactory& make_cuda) : env_(o.launch) {
  const auto timeout = std::chrono::milliseconds(std::llround(o.dist_timeout * 1000));
  dist::StoreOptions store;
  store.host = env_.master_addr;
  store.port = env_.master_port;
  store.rank = env_.rank;
  store.world_size = env_.world_size;
  store.timeout = timeout;
  store_ = std::make_unique<dist::TcpStore>(store);
  (void)dist::join_job(*store_, env_, dist::host_name());
  if (o.resolved_device.is_cpu()) {
    comm_ = std::make_unique<dist::StoreCommunicator>(*store_);
  } else {
    TG_CHECK(make_cuda, NotImplementedError, "data parallelism on ", o.resolved_device.str(),
             ": this program was given no NCCL communicator (see docs/distributed.md)");
    comm_ = make_cuda(*store_, env_, timeout);
  }
}

void DataParallel::share_parameters(const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                                    std::optional<int64_t> resumed_step) {
  dist::NamedTensors checked = model.named_parameters();
  if (!resumed_step) {
    for (const auto& [name, param] : checked) comm_->broadcast(param, 0);
    comm_->synchronize("the broadcast of rank 0's parameters");
    dist::check_parameters_match(*store_, "start", checked);
    return;
  }
  for (const auto& [name, tensor] : optimizer.state_dict()) checked.emplace_back("optimizer." + name, tensor);
  dist::check_parameters_match(*store_, "resume at step " + std::to_string(*resumed_step), checked);
}

void DataParallel::reduce_gradients(const vit::VisionTransformer& model) {
  reducer_ = std::make_unique<dist::GradientReducer>(model.named_parameters(), *comm_);
}

std::vector<double> DataParallel::sum(const std::vector<double>& values, const std::string& what) {
  const Tensor t = from_vector<double>(values, {static_cast<int64_t>(values.size())}).to(comm_->device());
  comm_->all_reduce(t, dist::ReduceOp::sum);
  comm_->synchronize(what);
  return t.to_vector<double>();
}

std::vector<std::vector<int64_t>> DataParallel::gather(const std::string& key, const std::vector<int64_t>& values) {
  std::string text;
  for (const int64_t v : values) text += std::to_string(v) + " ";
  std::vector<std::vector<int64_t>> all;
  for (const dist::Bytes& bytes : dist::all_gather(*store_, kReportPrefix + key, dist::Bytes(text.begin(), text.end()))) {
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    all.emplace_back();
    for (int64_t v = 0; in >> v;) all.back().push_back(v);
  }
  return all;
}

std::vector<std::map<std::string, Tensor>> DataParallel::gather_tensors(const std::string& key,
                                                                       const std::map<std::string, Tensor>& tensors) {
  // Per tensor: "<name>\n<dtype>\n<dims...>\n<bytes>\n", then its bytes.
  dist::Bytes mine;
  for (const auto& [name, tensor] : tensors) {
    const Tensor host = tensor.to(Device::cpu()).raw_contiguous();
    std::ostringstream header_text;
    header_text << name << "\n" << dtype_name(host.dtype()) << "\n";
    for (const int64_t d : host.shape()) header_text << d << " ";
    header_text << "\n" << host.nbytes() << "\n";
    const std::string header = header_text.str();
    mine.insert(mine.end(), header.begin(), header.end());
    const auto* bytes = static_cast<const uint8_t*>(host.raw_data());
    mine.insert(mine.end(), bytes, bytes + host.nbytes());
  }
  std::vector<std::map<std::string, Tensor>> all;
  for (const dist::Bytes& blob : dist::all_gather(*store_, kReportPrefix + key, mine)) {
    all.emplace_back();
    const std::string text(blob.begin(), blob.end());
    size_t at = 0;
    const auto line = [&] {
      const size_t end = text.find('\n', at);
      TG_CHECK(end != std::string::npos, DistributedError, "DataParallel: a rank sent malformed tensors for '", key, "'");
      std::string out = text.substr(at, end - at);
      at = end + 1;
      return out;
    };
    while (at < text.size()) {
      const std::string name = line();
      const DType dtype = dtype_from_name(line());
      std::vector<int64_t> dims;
      std::istringstream shape(line());
      for (int64_t d = 0; shape >> d;) dims.push_back(d);
      const size_t nbytes = std::stoull(line());
      TG_CHECK(at + nbytes <= text.size() && nbytes == static_cast<size_t>(Shape(dims).numel()) * dtype_size(dtype),
               DistributedError, "DataParallel: a rank sent malformed tensors for '", key, "'");
      all.back()[name] = from_host(text.data() + at, Shape(dims), dtype);
      at += nbytes;
    }
  }
  return all;
}

void DataParallel::finish() {
  comm_->synchronize("the end of training");
  if (rank() != 0) {
    store_->set(kFinishedPrefix + std::to_string(rank()), {});
    return;
  }
  std::vector<std::string> keys;
  for (int r = 1; r < world_size(); ++r) keys.push_back(kFinishedPrefix + std::to_string(r));
  store_->wait(keys);
}

}  // namespace tg::train
