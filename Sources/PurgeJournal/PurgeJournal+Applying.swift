import CacheStore
import Foundation
import Logging
import PostgresNIO

/// Applying the journal to this node's store, in sequence order (docs/fleet.md), and
/// trimming what every node has applied.
extension PurgeJournal {
    /// Applies, in sequence order, every journaled purge this store has not applied; one
    /// caller at a time.
    func catchUp(_ connection: PostgresConnection) async throws {
        try await exclusively { try await catchUpAlone(connection) }
    }

    private func catchUpAlone(_ connection: PostgresConnection) async throws {
        var applied = try store.journalApplied()
        while true {
            // How far rows were trimmed and the next rows, from one snapshot: a trim between
            // two reads could otherwise remove rows this node has not applied unseen.
            let after = applied
            let (trimmed, batch) = try await bounded(connection) {
                try await self.readBatch(after: after, connection)
            }
            if applied < trimmed {
                // Rows this node never applied were trimmed (journal_retention): it cannot know
                // what they covered, so everything it holds is revalidated before reuse.
                logger.warning(
                    "purge journal: purges this node missed were trimmed; every stored object is marked stale",
                    metadata: ["applied": "\(applied)", "trimmed_through": "\(trimmed)"])
                var everything = Purge(.prefix(""), soft: true, time: now())
                everything.journalSequence = trimmed
                let count = try await store.purge(everything)
                telemetry.recordPurge(everything, objects: count)
                applied = trimmed
                continue
            }
            for row in batch {
                try await apply(row)
                applied = row.sequence
            }
            if batch.count < Self.batchSize { break }
        }
        let done = applied
        try await bounded(connection) {
            try await connection.query(
                "UPDATE nodes SET applied = \(done), seen = now() WHERE node = \(self.node)", logger: self.logger)
        }
        status.withLockedValue { $0.applied = applied }
        telemetry.journal.set(applied: applied)
    }

    struct Row: Sendable {
        var sequence: Int64
        var kind: String
        var value: String
        var soft: Bool
        var time: Double
        var node: String
    }

    /// `journal_state.trimmed_through` and the rows after `applied`, in one REPEATABLE READ
    /// transaction (this connection's statements run one caller at a time).
    private func readBatch(after applied: Int64, _ connection: PostgresConnection) async throws -> (Int64, [Row]) {
        let logger = self.logger
        return try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: logger)
            var trimmed: Int64 = 0
            for try await value in try await connection.query(
                "SELECT trimmed_through FROM journal_state WHERE id = 1", logger: logger
            ).decode(Int64.self) {
                trimmed = value
            }
            let rows = try await connection.query(
                """
                SELECT seq, kind, value, soft, extract(epoch FROM time)::float8, node FROM purges
                WHERE seq > \(applied) ORDER BY seq LIMIT \(Self.batchSize)
                """, logger: logger)
            var batch: [Row] = []
            for try await (sequence, kind, value, soft, time, node) in rows.decode(
                (Int64, String, String, Bool, Double, String).self)
            {
                batch.append(Row(sequence: sequence, kind: kind, value: value, soft: soft, time: time, node: node))
            }
            return (trimmed, batch)
        }
    }

    /// Applies one journal row to the store, recording its sequence number with it.
    private func apply(_ row: Row) async throws {
        guard let target = JournalEntry(kind: row.kind, value: row.value).target else {
            logger.error(
                "purge journal: a purge of an unknown kind is skipped",
                metadata: ["seq": "\(row.sequence)", "kind": "\(row.kind)", "node": "\(row.node)"])
            var nothing = Purge(.url(""), time: row.time)
            nothing.journalSequence = row.sequence
            _ = try await store.purge(nothing)
            return
        }
        var purge = Purge(target, soft: row.soft, time: row.time)
        purge.journalSequence = row.sequence
        let count = try await store.purge(purge)
        telemetry.recordPurge(purge, objects: count)
        status.withLockedValue { status in
            status.counts[row.sequence] = count
            if status.counts.count > 1024, let oldest = status.counts.keys.min() {
                status.counts[oldest] = nil
            }
        }
        logger.info(
            "journal purge applied",
            metadata: [
                "seq": "\(row.sequence)", "kind": "\(row.kind)", "value": "\(row.value)", "soft": "\(row.soft)",
                "objects": "\(count)", "from": "\(row.node)",
            ])
    }

    /// Forgets nodes not seen for `journal_retention`, then removes the purges every known
    /// node has applied and those older than the retention, remembering how far it went.
    func trim(_ connection: PostgresConnection) async throws {
        let retention = settings.journalRetention
        let logger = self.logger
        try await bounded(connection) {
            try await connection.query(
                "DELETE FROM nodes WHERE seen < now() - \(retention) * interval '1 second'", logger: logger)
        }
        try await bounded(connection) { try await self.trimRows(connection, retention: retention) }
    }

    private func trimRows(_ connection: PostgresConnection, retention: Double) async throws {
        try await connection.query(
            """
            WITH gone AS (
                DELETE FROM purges
                WHERE seq <= (SELECT coalesce(min(applied), 0) FROM nodes)
                   OR time < now() - \(retention) * interval '1 second'
                RETURNING seq)
            UPDATE journal_state SET trimmed_through = greatest(trimmed_through, (SELECT coalesce(max(seq), 0) FROM gone))
            WHERE id = 1
            """, logger: logger)
    }
}
