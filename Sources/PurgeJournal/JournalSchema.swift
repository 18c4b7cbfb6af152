import PostgresNIO

/// The journal's tables (docs/fleet.md), created by the first node that connects.
enum JournalSchema {
    static let create: [PostgresQuery] = [
        """
        CREATE TABLE IF NOT EXISTS purges (
            seq bigserial PRIMARY KEY,
            kind text NOT NULL,
            value text NOT NULL,
            soft boolean NOT NULL,
            time timestamptz NOT NULL,
            node text NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS nodes (
            node text PRIMARY KEY,
            applied bigint NOT NULL,
            seen timestamptz NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS journal_state (
            id integer PRIMARY KEY CHECK (id = 1),
            trimmed_through bigint NOT NULL)
        """,
        "INSERT INTO journal_state (id, trimmed_through) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    ]
}
