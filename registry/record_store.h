// RecordStore: the durable copy of the registry's records. The Registry
// serves from memory and writes every change through a RecordStore before
// it answers, so a record a caller was told about survives a crash of the
// registry; at start it loads them all back. SqliteRecordStore
// (sqlite_record_store.h) is the one on a local disk; another backend (etcd)
// implements the same three calls without touching the Registry.
//
//   std::unique_ptr<RecordStore> store = ...;
//   PM_RETURN_IF_ERROR(store->Put(stored));      // create or replace
//   PM_RETURN_IF_ERROR(store->Delete(id));       // an evicted record
//   PM_ASSIGN_OR_RETURN(std::vector<StoredRecord> all, store->LoadAll());
#ifndef PM_REGISTRY_RECORD_STORE_H_
#define PM_REGISTRY_RECORD_STORE_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pm/internal/v1/internal.pb.h"

namespace pm::registry {

class RecordStore {
 public:
  virtual ~RecordStore() = default;

  // Stores `record` under its status's id, replacing the one stored there.
  // Returns once the write is durable as the backend defines it (see its
  // header); an error leaves the stored copy as it was.
  virtual absl::Status Put(const pm::internal::v1::StoredRecord& record) = 0;

  // Drops the record of `id`; OK when there is none.
  virtual absl::Status Delete(absl::string_view id) = 0;

  // Every stored record, in no particular order. DATA_LOSS when one cannot
  // be read back (naming where and which).
  virtual absl::StatusOr<std::vector<pm::internal::v1::StoredRecord>>
  LoadAll() = 0;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_RECORD_STORE_H_
