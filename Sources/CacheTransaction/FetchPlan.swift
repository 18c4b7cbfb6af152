import CacheStore
import HTTPCaching

/// How a fetch came about, for its Cache-Status and for what to do with a 304 or an error.
package struct FetchPlan: Sendable {
    /// What the fetch asks the origin for.
    enum Scope: Sendable {
        /// The whole response, for the cache: the client's conditions and Range are answered
        /// here from it (RFC 9111 §4.3.2, RFC 9110 §14).
        case whole
        /// The client's Range (and its conditions) as sent; a 206 is kept as a stored part
        /// (RFC 9111 §3.4).
        case rangeAlone
        /// The bytes after this stored prefix part: the client asked for the whole response
        /// and gets it, the part's bytes first.
        case completing(ObjectRecord)
    }

    var forward: CacheStatus.Forward
    /// The stored response being validated, when the fetch is a validation.
    var revalidating: ObjectRecord?
    /// The stored (stale or no longer usable) response this fetch replaces, if any: what
    /// stale-if-error falls back to, and why an unreachable origin is a 504.
    var stale: ObjectRecord?
    var detail: CacheStatus.Detail?
    var collapsed: Bool
    var scope = Scope.whole

    /// Whether the client's Range and conditions go upstream as they came.
    var forwardsRange: Bool {
        if case .whole = scope { return false }
        return true
    }

    /// The stored prefix part this fetch completes.
    var completing: ObjectRecord? {
        if case .completing(let part) = scope { return part }
        return nil
    }
}
