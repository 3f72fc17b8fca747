// RecordStore: the durable copy of the registry's records. The Registry
// serves from memory and writes every change through a RecordStore before
// it answers, so a record a caller was told about survives a crash of the
// registry; at start it loads them all back. SqliteRecordStore
// (sqlite_record_store.h) is the one on a local disk; another backend (etcd,
// whose transactions do the same) implements the same two calls without
// touching the Registry.
//
//   std::unique_ptr<RecordStore> store = ...;
//   RecordWrite write;
//   write.put.push_back(stored);                 // create or replace
//   write.remove.push_back(evicted_id);          // an evicted record
//   PM_RETURN_IF_ERROR(store->Write(write));     // all of it, or none
//   PM_ASSIGN_OR_RETURN(std::vector<StoredRecord> all, store->LoadAll());
#ifndef PM_REGISTRY_RECORD_STORE_H_
#define PM_REGISTRY_RECORD_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::registry {

// One atomic change of the store: the records to store (each under its
// status's id, replacing the one stored there), then the ids to drop (OK
// when one is not there). A record ended and evicted at once is put and
// removed.
struct RecordWrite {
  std::vector<pm::internal::v1::StoredRecord> put;
  std::vector<std::string> remove;
  // Events (Watch) to store with the change, and the sequence below which
  // stored events are dropped (0: none).
  std::vector<pm::v1::Event> events;
  uint64_t drop_events_below = 0;
};

class RecordStore {
 public:
  virtual ~RecordStore() = default;

  // Applies `write` whole or not at all, and returns once it is durable as
  // the backend defines it (see its header). An error leaves the store as
  // it was.
  virtual absl::Status Write(const RecordWrite& write) = 0;

  // Every stored record, in no particular order. DATA_LOSS when one cannot
  // be read back (naming where and which).
  virtual absl::StatusOr<std::vector<pm::internal::v1::StoredRecord>>
  LoadAll() = 0;

  // Every stored event, oldest first. A store that keeps none: empty.
  virtual absl::StatusOr<std::vector<pm::v1::Event>> LoadEvents() {
    return std::vector<pm::v1::Event>();
  }
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_RECORD_STORE_H_
