#include "registry/sqlite_record_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/status.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::StoredRecord;

// The schema this code writes; a database of a newer one is refused rather
// than misread.
constexpr int kSchemaVersion = 1;

absl::StatusCode CodeOf(int rc) {
  switch (rc & 0xff) {  // the primary result code
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Creates the file 0600 before SQLite does (it would use 0644 less the
// umask); its -wal file takes the same mode. An existing file is tightened.
absl::Status CreatePrivateFile(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("open", path);
  if (fchmod(fd.get(), 0600) != 0) return ErrnoError("fchmod", path);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteRecordStore>> SqliteRecordStore::Open(
    const std::string& path) {
  PM_RETURN_IF_ERROR(CreatePrivateFile(path));
  std::unique_ptr<SqliteRecordStore> store(new SqliteRecordStore(path));
  PM_RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status SqliteRecordStore::Init() {
  absl::MutexLock lock(&mutex_);
  // NOMUTEX: the connection is only used under mutex_.
  int rc = sqlite3_open_v2(path_.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_open_v2");
  sqlite3_extended_result_codes(db_, 1);
  // Exclusive before the first access: the lock taken then is held until
  // close (a second registry fails at once instead of writing too), and WAL
  // then needs no shared-memory file.
  PM_RETURN_IF_ERROR(Exec("PRAGMA locking_mode=EXCLUSIVE"));
  // The first statement that reads the file: a file that is not a database
  // fails here (SQLITE_NOTADB).
  PM_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  PM_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
  {
    sqlite3_stmt* version = nullptr;
    rc = sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &version, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(user_version)");
    absl::Cleanup finalize = [version] { sqlite3_finalize(version); };
    rc = sqlite3_step(version);
    if (rc != SQLITE_ROW) return Error(rc, "sqlite3_step(user_version)");
    const int found = sqlite3_column_int(version, 0);
    if (found > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          path_, " has schema version ", found, "; this registry reads up to ",
          kSchemaVersion, " (written by a newer pm?)"));
    }
  }
  PM_RETURN_IF_ERROR(Exec(
      "CREATE TABLE IF NOT EXISTS records ("
      " id TEXT PRIMARY KEY NOT NULL,"
      " owner_user TEXT NOT NULL,"
      " state INTEGER NOT NULL,"
      " ended_order INTEGER,"  // NULL while it runs
      " record BLOB NOT NULL)"));
  // The events of Watch, each stored with the change it tells of.
  PM_RETURN_IF_ERROR(Exec(
      "CREATE TABLE IF NOT EXISTS events ("
      " sequence INTEGER PRIMARY KEY NOT NULL,"
      " event BLOB NOT NULL)"));
  PM_RETURN_IF_ERROR(
      Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str()));
  rc = sqlite3_prepare_v2(db_,
                          "INSERT OR REPLACE INTO records"
                          " (id, owner_user, state, ended_order, record)"
                          " VALUES (?1, ?2, ?3, ?4, ?5)",
                          -1, &put_, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(INSERT)");
  rc = sqlite3_prepare_v2(db_, "DELETE FROM records WHERE id = ?1", -1,
                          &delete_, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(DELETE)");
  rc = sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO events (sequence, event) VALUES (?1, ?2)",
                          -1, &put_event_, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(INSERT event)");
  rc = sqlite3_prepare_v2(db_, "DELETE FROM events WHERE sequence < ?1", -1,
                          &drop_events_, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(DELETE events)");
  return absl::OkStatus();
}

SqliteRecordStore::~SqliteRecordStore() {
  absl::MutexLock lock(&mutex_);
  sqlite3_finalize(put_);
  sqlite3_finalize(delete_);
  sqlite3_finalize(put_event_);
  sqlite3_finalize(drop_events_);
  // Checkpoints the log into the database and removes it.
  sqlite3_close(db_);
}

absl::Status SqliteRecordStore::Write(const RecordWrite& write) {
  absl::MutexLock lock(&mutex_);
  const bool batch = write.put.size() + write.remove.size() +
                         write.events.size() + (write.drop_events_below > 0) >
                     1;
  // A single statement is a transaction of its own already.
  if (batch) PM_RETURN_IF_ERROR(Exec("BEGIN"));
  absl::Status status = absl::OkStatus();
  for (const StoredRecord& record : write.put) {
    if (status.ok()) status = Put(record);
  }
  for (const std::string& id : write.remove) {
    if (status.ok()) status = Remove(id);
  }
  for (const pm::v1::Event& event : write.events) {
    if (status.ok()) status = PutEvent(event);
  }
  if (status.ok() && write.drop_events_below > 0) {
    status = DropEvents(write.drop_events_below);
  }
  if (!batch) return status;
  if (status.ok()) status = Exec("COMMIT");
  if (!status.ok()) {
    // Nothing of it stays; a failed rollback is SQLite's to finish (it
    // rolls back on the next open).
    Exec("ROLLBACK").IgnoreError();
  }
  return status;
}

absl::Status SqliteRecordStore::Put(const StoredRecord& record) {
  const std::string blob = record.SerializeAsString();
  const pm::v1::ProcessStatus& status = record.status();
  absl::Cleanup reset = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_reset(put_);
    sqlite3_clear_bindings(put_);
  };
  sqlite3_bind_text(put_, 1, status.id().data(),
                    static_cast<int>(status.id().size()), SQLITE_STATIC);
  sqlite3_bind_text(put_, 2, status.owner_user().data(),
                    static_cast<int>(status.owner_user().size()), SQLITE_STATIC);
  sqlite3_bind_int(put_, 3, status.state());
  if (record.ended_order() != 0) {
    sqlite3_bind_int64(put_, 4, static_cast<sqlite3_int64>(record.ended_order()));
  }
  sqlite3_bind_blob(put_, 5, blob.data(), static_cast<int>(blob.size()),
                    SQLITE_STATIC);
  const int rc = sqlite3_step(put_);
  if (rc != SQLITE_DONE) {
    return Error(rc, absl::StrCat("sqlite3_step(INSERT ", status.id(), ")"));
  }
  return absl::OkStatus();
}

absl::Status SqliteRecordStore::Remove(const std::string& id) {
  absl::Cleanup reset = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_reset(delete_);
    sqlite3_clear_bindings(delete_);
  };
  sqlite3_bind_text(delete_, 1, id.data(), static_cast<int>(id.size()),
                    SQLITE_STATIC);
  const int rc = sqlite3_step(delete_);
  if (rc != SQLITE_DONE) {
    return Error(rc, absl::StrCat("sqlite3_step(DELETE ", id, ")"));
  }
  return absl::OkStatus();
}

absl::Status SqliteRecordStore::PutEvent(const pm::v1::Event& event) {
  const std::string blob = event.SerializeAsString();
  absl::Cleanup reset = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_reset(put_event_);
    sqlite3_clear_bindings(put_event_);
  };
  sqlite3_bind_int64(put_event_, 1, static_cast<sqlite3_int64>(event.sequence()));
  sqlite3_bind_blob(put_event_, 2, blob.data(), static_cast<int>(blob.size()),
                    SQLITE_STATIC);
  const int rc = sqlite3_step(put_event_);
  if (rc != SQLITE_DONE) {
    return Error(rc, absl::StrCat("sqlite3_step(INSERT event ", event.sequence(), ")"));
  }
  return absl::OkStatus();
}

absl::Status SqliteRecordStore::DropEvents(uint64_t below) {
  absl::Cleanup reset = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    sqlite3_reset(drop_events_);
    sqlite3_clear_bindings(drop_events_);
  };
  sqlite3_bind_int64(drop_events_, 1, static_cast<sqlite3_int64>(below));
  const int rc = sqlite3_step(drop_events_);
  if (rc != SQLITE_DONE) return Error(rc, "sqlite3_step(DELETE events)");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<pm::v1::Event>> SqliteRecordStore::LoadEvents() {
  absl::MutexLock lock(&mutex_);
  sqlite3_stmt* select = nullptr;
  int rc = sqlite3_prepare_v2(
      db_, "SELECT sequence, event FROM events ORDER BY sequence", -1, &select,
      nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(SELECT events)");
  absl::Cleanup finalize = [select] { sqlite3_finalize(select); };
  std::vector<pm::v1::Event> events;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    const sqlite3_int64 sequence = sqlite3_column_int64(select, 0);
    pm::v1::Event& event = events.emplace_back();
    if (!event.ParseFromArray(sqlite3_column_blob(select, 1),
                              sqlite3_column_bytes(select, 1)) ||
        event.sequence() != static_cast<uint64_t>(sequence)) {
      return absl::DataLossError(absl::StrCat(
          "event ", sequence, " in ", path_,
          " does not read back as a pm.v1.Event of that sequence"));
    }
  }
  if (rc != SQLITE_DONE) return Error(rc, "sqlite3_step(SELECT events)");
  return events;
}

absl::StatusOr<std::vector<StoredRecord>> SqliteRecordStore::LoadAll() {
  absl::MutexLock lock(&mutex_);
  sqlite3_stmt* select = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT id, record FROM records", -1,
                              &select, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "sqlite3_prepare_v2(SELECT)");
  absl::Cleanup finalize = [select] { sqlite3_finalize(select); };
  std::vector<StoredRecord> records;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    const std::string id(
        reinterpret_cast<const char*>(sqlite3_column_text(select, 0)),
        static_cast<size_t>(sqlite3_column_bytes(select, 0)));
    const void* blob = sqlite3_column_blob(select, 1);
    const int size = sqlite3_column_bytes(select, 1);
    StoredRecord& record = records.emplace_back();
    if (!record.ParseFromArray(blob, size) || record.status().id() != id) {
      return absl::DataLossError(absl::StrCat(
          "record ", id, " in ", path_,
          " does not read back as a pm.internal.v1.StoredRecord of that id"));
    }
  }
  if (rc != SQLITE_DONE) return Error(rc, "sqlite3_step(SELECT)");
  return records;
}

absl::Status SqliteRecordStore::Exec(const char* sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  absl::Cleanup free_message = [message] { sqlite3_free(message); };
  if (rc != SQLITE_OK) return Error(rc, absl::StrCat("sqlite3_exec(", sql, ")"));
  return absl::OkStatus();
}

absl::Status SqliteRecordStore::Error(int rc, absl::string_view call) const {
  const char* reason =
      db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  return absl::Status(CodeOf(rc), absl::StrCat(call, " on ", path_, ": ",
                                               reason, " (SQLite code ", rc,
                                               ")"));
}

}  // namespace pm::registry
