import CacheStore
import Testing

@testable import PurgeJournal

/// A purge as a row of the journal's `purges` table, and back.
@Suite("PurgeJournal: rows")
struct JournalEntryTests {
    @Test(
        "url, prefix and tags round-trip through kind and value",
        arguments: [
            (Purge.Target.url("http://h/a?b=c"), "url", "http://h/a?b=c"),
            (.prefix("http://h/static/"), "prefix", "http://h/static/"),
            (.tags(["product-12", "list"]), "tag", "product-12 list"),
        ])
    func roundTrip(target: Purge.Target, kind: String, value: String) {
        let entry = JournalEntry(target)
        #expect(entry.kind == kind && entry.value == value)
        #expect(JournalEntry(kind: kind, value: value).target == target)
    }

    @Test("a kind this version does not know is nil (skipped, logged, its sequence still recorded)")
    func unknownKind() {
        #expect(JournalEntry(kind: "regex", value: ".*").target == nil)
    }
}
