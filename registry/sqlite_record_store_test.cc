// SqliteRecordStore on its own: rows survive a reopen, the file is private,
// a database held by another store or broken on disk is refused with an
// error that names the file.
#include "registry/sqlite_record_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::StoredRecord;
using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR"), "/store.XXXXXX");
  return absl::StrCat(mkdtemp(tmpl.data()), "/", name);
}

StoredRecord Record(int n, ProcessStatus::State state = ProcessStatus::STATE_RUNNING) {
  StoredRecord record;
  record.mutable_status()->set_id(
      absl::StrCat("00000000-0000-4000-8000-", absl::Dec(n, absl::kZeroPad12)));
  record.mutable_status()->set_state(state);
  record.mutable_status()->set_owner_user("alice");
  // Big enough that a few hundred rows fill many pages.
  record.mutable_status()->set_executable(std::string(300, 'x'));
  record.set_boot_id("boot-1");
  record.set_created_order(static_cast<uint64_t>(n));
  return record;
}

std::map<std::string, StoredRecord> LoadById(SqliteRecordStore& store) {
  absl::StatusOr<std::vector<StoredRecord>> all = store.LoadAll();
  EXPECT_TRUE(all.ok()) << all.status();
  std::map<std::string, StoredRecord> by_id;
  if (all.ok()) {
    for (StoredRecord& record : *all) by_id[record.status().id()] = record;
  }
  return by_id;
}

TEST(SqliteRecordStoreTest, PutReplaceAndDeleteSurviveAReopen) {
  const std::string path = TempPath("registry.sqlite");
  {
    auto store = SqliteRecordStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Write(RecordWrite{{Record(1), Record(2)}, {}, {}, 0}).ok());
    ASSERT_TRUE((*store)->Write(RecordWrite{{Record(3)}, {}, {}, 0}).ok());
    StoredRecord ended = Record(2, ProcessStatus::STATE_EXITED);
    ended.set_ended_order(1);
    // Replaces, and drops in the same transaction.
    ASSERT_TRUE(
        (*store)->Write(RecordWrite{{ended}, {Record(3).status().id(), "not-there"}, {}, 0}).ok());
    // Put and removed at once: gone.
    ASSERT_TRUE((*store)->Write(RecordWrite{{Record(4)}, {Record(4).status().id()}, {}, 0}).ok());
  }
  auto store = SqliteRecordStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  std::map<std::string, StoredRecord> by_id = LoadById(**store);
  ASSERT_EQ(by_id.size(), 2u);
  const StoredRecord& ended = by_id.at(Record(2).status().id());
  EXPECT_EQ(ended.status().state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended.ended_order(), 1u);
  EXPECT_EQ(ended.boot_id(), "boot-1");
  EXPECT_EQ(by_id.at(Record(1).status().id()).status().state(),
            ProcessStatus::STATE_RUNNING);
}

TEST(SqliteRecordStoreTest, TheDatabaseIsPrivate) {
  const std::string path = TempPath("registry.sqlite");
  const mode_t old_mask = umask(0);  // SQLite alone would make it 0644
  auto store = SqliteRecordStore::Open(path);
  umask(old_mask);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Write(RecordWrite{{Record(1)}, {}, {}, 0}).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((path + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(SqliteRecordStoreTest, ASecondStoreOnTheSameFileIsRefused) {
  const std::string path = TempPath("registry.sqlite");
  auto first = SqliteRecordStore::Open(path);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = SqliteRecordStore::Open(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(path));
  EXPECT_THAT(second.status().message(), HasSubstr("locked"));
}

TEST(SqliteRecordStoreTest, AFileThatIsNotADatabaseIsDataLossNamingIt) {
  const std::string path = TempPath("registry.sqlite");
  {
    Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    const std::string junk(8192, 'j');
    ASSERT_EQ(write(fd.get(), junk.data(), junk.size()),
              static_cast<ssize_t>(junk.size()));
  }
  auto store = SqliteRecordStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr(path));
  EXPECT_THAT(store.status().message(), HasSubstr("not a database"));
}

TEST(SqliteRecordStoreTest, ATornDatabaseIsAnErrorNamingItNotACrash) {
  const std::string path = TempPath("registry.sqlite");
  {
    auto store = SqliteRecordStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE((*store)->Write(RecordWrite{{Record(i)}, {}, {}, 0}).ok());
    }
  }  // closed: the log is checkpointed into the file
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_GT(st.st_size, 8 * 4096);
  // A write torn half way: the second half of the file is gone.
  ASSERT_EQ(truncate(path.c_str(), st.st_size / 2), 0);
  auto store = SqliteRecordStore::Open(path);
  absl::Status status = store.status();
  if (store.ok()) status = (*store)->LoadAll().status();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(path));
}

TEST(SqliteRecordStoreTest, ARowThatIsNotARecordIsDataLossNamingIt) {
  const std::string path = TempPath("registry.sqlite");
  {
    auto store = SqliteRecordStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    StoredRecord record = Record(1);
    ASSERT_TRUE((*store)->Write(RecordWrite{{record}, {}, {}, 0}).ok());
  }
  {
    // Another program (or a bit flip) rewrote the blob.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "UPDATE records SET record = x'ffffffff'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = SqliteRecordStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Status status = (*store)->LoadAll().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(status.message(), HasSubstr(Record(1).status().id()));
}

}  // namespace
}  // namespace pm::registry
