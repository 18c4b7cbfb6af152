import CacheStore
import HTTPCaching

/// Bytes `lower...upper` (offsets in its body) of a stored part.
package struct StoredSpan {
    var part: ObjectRecord
    var lower: Int64
    var upper: Int64
}

/// RFC 9111 §3.4: a new part and a stored part of the same representation (same strong
/// validator, same complete length) that touch are combined into one, and into the complete
/// response when together they cover it. Pure: which stored bytes go before and after the new
/// ones, and the combined response to commit.
package struct PartCombination {
    var prefix: StoredSpan?
    var suffix: StoredSpan?
    var response: StoredResponse

    /// The combination of a newly fetched part (`part`, with its Content-Range) with one of the
    /// stored `variants` of the same secondary key; nil when none combines with it.
    static func find(
        _ part: StoredResponse, declaredLength: Int?, secondaryKey: String, variants: [ObjectRecord]
    ) -> PartCombination? {
        guard let new = part.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
            let complete = new.completeLength, declaredLength.map(Int64.init) == new.length,
            StrongValidator(of: part) != nil
        else { return nil }
        for old in variants where old.response.status == 206 && old.secondaryKey == secondaryKey {
            guard StrongValidator.same(old.response, part),
                let stored = old.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
                stored.completeLength == complete, Int64(old.bodyLength) == stored.length,
                stored.first <= new.last + 1, new.first <= stored.last + 1
            else { continue }
            let prefix =
                stored.first < new.first ? StoredSpan(part: old, lower: 0, upper: new.first - 1 - stored.first) : nil
            let suffix =
                stored.last > new.last
                ? StoredSpan(part: old, lower: new.last + 1 - stored.first, upper: stored.length - 1) : nil
            let combined = ContentRange(
                first: min(stored.first, new.first), last: max(stored.last, new.last), completeLength: complete)
            var response = part
            if combined.first == 0 && combined.last == complete - 1 {
                response.status = 200
                response.headers.remove("Content-Range")
            } else {
                response.headers.replace("Content-Range", with: combined.headerValue)
            }
            response.headers.replace("Content-Length", with: String(combined.length))
            return PartCombination(prefix: prefix, suffix: suffix, response: response)
        }
        return nil
    }
}
