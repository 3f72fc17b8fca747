// SqliteRecordStore: the registry's records in one SQLite database on local
// disk, <state_dir>/registry.sqlite (mode 0600).
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<SqliteRecordStore> store,
//                       SqliteRecordStore::Open(state_dir + "/registry.sqlite"));
//   PM_RETURN_IF_ERROR(store->Write({.put = {stored}}));
//
// One row per record: the StoredRecord as a serialized protobuf blob, plus
// the columns a query would need (id, owner_user, state, ended_order).
// Each Write is one transaction. Journal in WAL mode with
// synchronous=NORMAL: a Write returns once its transaction is appended to the write-ahead log (a write(), no fsync), so
// it survives the death of the registry at any point (the kernel has the
// bytes); a power loss or kernel crash may lose the last transactions before
// the next checkpoint syncs the log, but never corrupts the database.
// The database is held with an exclusive lock while the store is open: a
// second registry on the same state dir fails to open it (UNAVAILABLE,
// "database is locked") rather than both writing.
// Thread-safe (one connection behind a mutex).
#ifndef PM_REGISTRY_SQLITE_RECORD_STORE_H_
#define PM_REGISTRY_SQLITE_RECORD_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "registry/record_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace pm::registry {

class SqliteRecordStore : public RecordStore {
 public:
  // Opens the database at `path`, creating it (mode 0600) and its table if
  // missing. Errors name the file and SQLite's reason: DATA_LOSS for a file
  // that is not a database or is corrupt, UNAVAILABLE when another process
  // holds it, FAILED_PRECONDITION for a schema of a newer pm, INTERNAL or
  // the failed syscall otherwise.
  static absl::StatusOr<std::unique_ptr<SqliteRecordStore>> Open(
      const std::string& path);
  ~SqliteRecordStore() override;
  SqliteRecordStore(const SqliteRecordStore&) = delete;
  SqliteRecordStore& operator=(const SqliteRecordStore&) = delete;

  absl::Status Write(const RecordWrite& write) override;
  absl::StatusOr<std::vector<pm::internal::v1::StoredRecord>> LoadAll()
      override;
  absl::StatusOr<std::vector<pm::v1::Event>> LoadEvents() override;

  const std::string& path() const { return path_; }

 private:
  explicit SqliteRecordStore(std::string path) : path_(std::move(path)) {}
  absl::Status Init();
  // Runs `sql` (no results wanted).
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // One row in or out, inside Write's transaction.
  absl::Status Put(const pm::internal::v1::StoredRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status PutEvent(const pm::v1::Event& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status DropEvents(uint64_t below) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status Remove(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The status of SQLite result `rc` from `call` ("sqlite3_step(INSERT ...)"),
  // naming the file and SQLite's message.
  absl::Status Error(int rc, absl::string_view call) const;

  const std::string path_;
  absl::Mutex mutex_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* put_ ABSL_GUARDED_BY(mutex_) = nullptr;
  sqlite3_stmt* delete_ ABSL_GUARDED_BY(mutex_) = nullptr;
  sqlite3_stmt* put_event_ ABSL_GUARDED_BY(mutex_) = nullptr;
  sqlite3_stmt* drop_events_ ABSL_GUARDED_BY(mutex_) = nullptr;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_SQLITE_RECORD_STORE_H_
