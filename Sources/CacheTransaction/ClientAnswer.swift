import ContentCoding
import HTTPCaching

/// The answer a client gets from a representation the cache has whole: a stored response, or
/// one just fetched whole for the cache. Pure; the pipeline, the hit path and a fetch all ask
/// it, so a hit and a miss answer the same request the same way.
///
/// The order is RFC 9110's: a representation the client accepts at all (§12.5.3), then the
/// preconditions (§13.2.2, only for a 2xx answer, §13.2.1), then Range (§14.2: GET, a 200,
/// a known length, If-Range still matching, §13.1.5).
package enum ClientAnswer: Equatable, Sendable {
    /// The representation as it is, with its own status.
    case whole
    /// 206 with bytes `lower...upper` of the representation (§14.4, §15.3.7).
    case range(lower: Int64, upper: Int64)
    /// 206 multipart/byteranges with these parts in request order (§14.6).
    case multipart([ClosedRange<Int64>])
    /// 416 with `Content-Range: bytes */length` (§15.5.17).
    case rangeNotSatisfiable
    /// 304 (§15.4.5).
    case notModified
    /// 412 (§15.5.13).
    case preconditionFailed
    /// 406 (§15.5.7): no coding of it the client accepts.
    case notAcceptable

    /// Whether the answer sends the representation's bytes (all, a range, or parts); the
    /// others are generated whole (``CachePipeline/sendWithoutBody(_:representation:age:length:cacheStatus:sink:)``).
    var sendsBody: Bool {
        switch self {
        case .whole, .range, .multipart: return true
        case .rangeNotSatisfiable, .notModified, .preconditionFailed, .notAcceptable: return false
        }
    }

    /// - Parameters:
    ///   - selected: the representation's view of the response (its status, and the header
    ///     fields conditions compare against: its own entity tag and Last-Modified).
    ///   - acceptable: false when no coding of it is acceptable to the client.
    ///   - rangeLength: the representation's length when a Range may be cut from it; nil when
    ///     it may not (length unknown, or bytes that are not stored as sent).
    ///   - maxRanges: the most ranges answered as multipart (`server.max_ranges`); 1 answers
    ///     several ranges with the whole representation.
    package static func decide(
        method: RequestMethod, requestHeaders: HeaderFields, selected: StoredResponse, acceptable: Bool = true,
        rangeLength: Int64?, maxRanges: Int
    ) -> ClientAnswer {
        guard acceptable else { return .notAcceptable }
        if (200..<300).contains(selected.status) {
            switch Conditional.evaluate(method: method.token, requestHeaders: requestHeaders, stored: selected) {
            case .notModified: return .notModified
            case .preconditionFailed: return .preconditionFailed
            case .proceed: break
            }
        }
        guard let rangeLength, let spec = rangeSpec(method: method, requestHeaders: requestHeaders, of: selected)
        else { return .whole }
        switch spec.resolveAll(length: rangeLength, maxRanges: maxRanges) {
        case .single(let lower, let upper): return .range(lower: lower, upper: upper)
        case .multiple(let ranges): return .multipart(ranges.map { $0.lower...$0.upper })
        case .unsatisfiable: return .rangeNotSatisfiable
        case .whole: return .whole
        }
    }

    /// The Range a request asks of a response, when one applies: a GET of a 200 whose If-Range
    /// (if any) still matches it (RFC 9110 §14.2, §13.1.5).
    static func rangeSpec(
        method: RequestMethod, requestHeaders: HeaderFields, of selected: StoredResponse
    ) -> ByteRangeSpec? {
        guard method == .get, selected.status == 200, let value = requestHeaders["Range"],
            let spec = ByteRangeSpec(value), ifRangeAllows(requestHeaders, stored: selected)
        else { return nil }
        return spec
    }

    /// RFC 9110 §13.1.5: a Range applies only while If-Range still matches (strong entity tag
    /// comparison, or a date equal to a strong Last-Modified).
    static func ifRangeAllows(_ headers: HeaderFields, stored: StoredResponse) -> Bool {
        guard let value = headers["If-Range"] else { return true }
        return StrongValidator.ifRangeMatches(value, stored: stored)
    }
}
