import CacheStore

/// A purge as a row of the journal's `purges` table: `kind` (`url`, `prefix`, `tag`) and
/// `value` (the URL, the prefix, or the tags separated by spaces — tags never contain one,
/// Surrogate-Key is a space-separated list).
package struct JournalEntry: Sendable, Equatable {
    package var kind: String
    package var value: String

    package init(_ target: Purge.Target) {
        switch target {
        case .url(let url): (kind, value) = ("url", url)
        case .prefix(let prefix): (kind, value) = ("prefix", prefix)
        case .tags(let tags): (kind, value) = ("tag", tags.joined(separator: " "))
        }
    }

    package init(kind: String, value: String) {
        self.kind = kind
        self.value = value
    }

    /// The purge target, nil for a kind this version does not know (a newer node wrote it).
    package var target: Purge.Target? {
        switch kind {
        case "url": .url(value)
        case "prefix": .prefix(value)
        case "tag": .tags(value.split(separator: " ").map(String.init))
        default: nil
        }
    }
}
