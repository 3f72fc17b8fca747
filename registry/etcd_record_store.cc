#include "registry/etcd_record_store.h"

#include <chrono>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_core.h"
#include "registry/cluster.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::StoredRecord;

constexpr char kRecords[] = "records/";
constexpr char kEvents[] = "events/";
// Digits of a uint64 in decimal: event keys sort as their sequences.
constexpr int kSequenceDigits = 20;

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const std::string& endpoint,
                                                          const EtcdTls& tls) {
  grpc::ChannelArguments arguments;
  // A page of LoadAll may be larger than gRPC's default 4 MiB: etcd allows
  // values up to its --max-request-bytes (1.5 MiB) each.
  arguments.SetMaxReceiveMessageSize(-1);
  return NewEtcdChannel(endpoint, tls, std::move(arguments));
}

absl::Status CheckOptions(const EtcdRecordStore::Options& options) {
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd key prefix \"", options.prefix,
                     "\" must end in '/' (\"/pm/<cluster>/\")"));
  }
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd call deadline must be positive");
  }
  if (options.page_size <= 0 || options.max_txn_ops == 0) {
    return absl::InvalidArgumentError(
        "etcd page size and max txn ops must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdRecordStore>> EtcdRecordStore::Open(
    Options options) {
  PM_RETURN_IF_ERROR(CheckOptions(options));
  std::vector<std::string> endpoints =
      absl::StrSplit(options.endpoints, ',', absl::SkipWhitespace());
  if (endpoints.empty()) {
    return absl::InvalidArgumentError("no etcd endpoint given (host:port)");
  }
  std::vector<std::string> failures;
  for (std::string& endpoint : endpoints) {
    endpoint = std::string(absl::StripAsciiWhitespace(endpoint));
    PM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                        NewChannel(endpoint, options.tls));
    std::unique_ptr<EtcdRecordStore> store(
        new EtcdRecordStore(options, endpoint, std::move(channel)));
    // The probe waits for a connection (wait_for_ready) up to the deadline,
    // so an etcd still starting is given its chance; later calls fail fast.
    etcdserverpb::RangeRequest request;
    request.set_key(options.prefix);
    request.set_keys_only(true);
    request.set_limit(1);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    store->SetDeadline(context);
    const grpc::Status rpc = store->kv_->Range(&context, request, &response);
    if (rpc.ok()) return store;
    failures.push_back(absl::StrCat(endpoint, ": ", rpc.error_message(),
                                    " (gRPC code ", rpc.error_code(), ")"));
  }
  return absl::UnavailableError(absl::StrCat(
      "etcd does not answer ", options.tls.Describe(), " within ",
      absl::FormatDuration(options.deadline), " at ", absl::StrJoin(failures, "; ")));
}

EtcdRecordStore::EtcdRecordStore(Options options, std::string endpoint,
                                 std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      channel_(std::move(channel)),
      kv_(etcdserverpb::KV::NewStub(channel_)) {}

std::string EtcdRecordStore::RecordKey(absl::string_view id) const {
  return absl::StrCat(options_.prefix, kRecords, id);
}

std::string EtcdRecordStore::EventKey(uint64_t sequence) const {
  return absl::StrCat(options_.prefix, kEvents,
                      absl::Dec(sequence, absl::kZeroPad20));
}

absl::Status EtcdRecordStore::Write(const RecordWrite& write) {
  // etcd refuses a Txn that touches one key twice, so the write is first
  // reduced to what it means: the last put of an id unless it is removed
  // too, and the events the drop leaves.
  std::map<std::string, const StoredRecord*> puts;
  for (const StoredRecord& record : write.put)
    puts[record.status().id()] = &record;
  const std::set<std::string> removes(write.remove.begin(), write.remove.end());
  for (const std::string& id : removes) puts.erase(id);
  std::map<uint64_t, const pm::v1::Event*> events;
  for (const pm::v1::Event& event : write.events) {
    if (event.sequence() >= write.drop_events_below) {
      events[event.sequence()] = &event;
    }
  }

  etcdserverpb::TxnRequest request;
  for (const auto& [id, record] : puts) {
    etcdserverpb::PutRequest* put =
        request.add_success()->mutable_request_put();
    put->set_key(RecordKey(id));
    put->set_value(record->SerializeAsString());
  }
  for (const std::string& id : removes) {
    request.add_success()->mutable_request_delete_range()->set_key(
        RecordKey(id));
  }
  for (const auto& [sequence, event] : events) {
    etcdserverpb::PutRequest* put =
        request.add_success()->mutable_request_put();
    put->set_key(EventKey(sequence));
    put->set_value(event->SerializeAsString());
  }
  if (write.drop_events_below > 0) {
    etcdserverpb::DeleteRangeRequest* drop =
        request.add_success()->mutable_request_delete_range();
    drop->set_key(EventKey(0));
    drop->set_range_end(EventKey(write.drop_events_below));
  }
  const size_t ops = static_cast<size_t>(request.success_size());
  if (ops == 0) return absl::OkStatus();
  if (ops > options_.max_txn_ops) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a write of ", ops, " ops (", puts.size(), " puts, ", removes.size(),
        " removes, ", events.size(), " events) to etcd at ", endpoint_,
        " exceeds the cap of ", options_.max_txn_ops,
        " ops in one etcd Txn (--max-txn-ops); not split, as two Txns are "
        "not atomic together"));
  }
  etcdserverpb::TxnResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status rpc = kv_->Txn(&context, request, &response);
  if (!rpc.ok()) return Error(absl::StrCat("Txn of ", ops, " ops"), rpc);
  if (!response.succeeded()) {  // no compares: cannot happen
    return absl::InternalError(absl::StrCat(
        "etcd at ", endpoint_, ": a Txn without compares did not succeed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredRecord>> EtcdRecordStore::LoadAll() {
  const std::string begin = absl::StrCat(options_.prefix, kRecords);
  std::vector<StoredRecord> records;
  PM_RETURN_IF_ERROR(RangePrefix(begin, [&](const mvccpb::KeyValue& kv) {
    const absl::string_view id =
        absl::string_view(kv.key()).substr(begin.size());
    StoredRecord& record = records.emplace_back();
    if (!record.ParseFromString(kv.value()) || record.status().id() != id) {
      return absl::DataLossError(absl::StrCat(
          "etcd at ", endpoint_, ": the value of key ", kv.key(),
          " does not read back as a pm.internal.v1.StoredRecord of id ", id));
    }
    return absl::OkStatus();
  }));
  return records;
}

absl::StatusOr<std::vector<pm::v1::Event>> EtcdRecordStore::LoadEvents() {
  const std::string begin = absl::StrCat(options_.prefix, kEvents);
  std::vector<pm::v1::Event> events;
  PM_RETURN_IF_ERROR(RangePrefix(begin, [&](const mvccpb::KeyValue& kv) {
    const absl::string_view digits =
        absl::string_view(kv.key()).substr(begin.size());
    uint64_t sequence = 0;
    pm::v1::Event& event = events.emplace_back();
    if (digits.size() != kSequenceDigits ||
        !absl::SimpleAtoi(digits, &sequence) ||
        !event.ParseFromString(kv.value()) || event.sequence() != sequence) {
      return absl::DataLossError(absl::StrCat(
          "etcd at ", endpoint_, ": the value of key ", kv.key(),
          " does not read back as a pm.v1.Event of that sequence"));
    }
    return absl::OkStatus();
  }));
  return events;
}

absl::Status EtcdRecordStore::RangePrefix(
    const std::string& begin,
    const std::function<absl::Status(const mvccpb::KeyValue&)>& each) {
  etcdserverpb::RangeRequest request;
  request.set_key(begin);
  request.set_range_end(EtcdPrefixEnd(begin));
  request.set_limit(options_.page_size);
  // No sort order: etcd then returns keys in key order and reads only
  // `limit` of them (asking for a sort makes it read the whole range).
  for (int page = 1;; ++page) {
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    const grpc::Status rpc = kv_->Range(&context, request, &response);
    if (!rpc.ok()) {
      return Error(
          absl::StrCat("Range of ", request.key(), " (page ", page, ")"), rpc);
    }
    for (const mvccpb::KeyValue& kv : response.kvs()) {
      PM_RETURN_IF_ERROR(each(kv));
    }
    if (!response.more() || response.kvs().empty()) return absl::OkStatus();
    // The next page starts just after this one's last key, at the revision
    // of the first page: the pages are one snapshot, whatever is written
    // meanwhile.
    request.set_key(response.kvs().rbegin()->key() + '\0');
    if (request.revision() == 0) {
      request.set_revision(response.header().revision());
    }
  }
}

absl::Status EtcdRecordStore::Error(absl::string_view what,
                                    const grpc::Status& rpc) const {
  return EtcdCallError(endpoint_, options_.tls, what, rpc);
}

void EtcdRecordStore::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.deadline));
}

}  // namespace pm::registry
