import CacheStore
import HTTPCaching
import OutpostConfig

/// `outpost inspect explain`: what the cache would do with a request, and why, from the store
/// as it is (docs/operations.md). Pure: the stored variants and the variant the store selects
/// come in; the answer is worked out by the functions the pipeline and the hit path decide
/// by (`Reuse`, `CachePipeline.reuseDecision`, `Representation.choose`, `ClientAnswer`).
package struct RequestExplanation: Codable, Equatable, Sendable {
    /// What happens: `hit`, `stale-hit` (a stale copy the request allows), `stale-while-revalidate`,
    /// `revalidate`, `partial`, `miss`, `pass`.
    package var action: String
    /// RFC 9211 `fwd` when the request goes upstream.
    package var forward: String?
    /// The status the client gets when the store answers (200, 206, 304, 412, 416, 406).
    package var status: Int?
    /// Why, one sentence each, in the order the cache decides.
    package var reasons: [String]
    package var url: String
    package var method: String
    /// Variants stored for the URL, and which one (1-based) the request selects.
    package var variants: Int
    package var selectedVariant: Int?
    /// The Vary fields that selected it, with the request's value (nil: absent).
    package var selectedBy: [Field]?
    /// For a Vary miss: per stored variant, the first field whose value differs.
    package var varyMismatches: [Mismatch]?
    package var freshness: Freshness?
    /// Seconds left in each stale window from now (nil: the response gives none and, for
    /// stale-if-error, the operator's window does not apply).
    package var staleWhileRevalidate: Window?
    package var staleIfError: Window?
    /// The coding of the body served (`identity`, `br`, `gzip`; `identity decoded from gzip`).
    package var coding: String?
    /// The part of the representation served (`bytes 0-99/1000`, `2 ranges`), nil for all.
    package var range: String?
    /// Conditional fields a revalidation sends upstream.
    package var revalidateWith: [Field]?

    /// A request field and its value (nil: absent), as Vary selected a variant by it or a
    /// revalidation sends it; `outpost inspect show` and `explain` both report these.
    package struct Field: Codable, Equatable, Sendable {
        package var field: String
        package var value: String?

        package init(field: String, value: String?) {
            self.field = field
            self.value = value
        }

        /// The values a stored variant was selected by (its secondary key; empty: no Vary).
        package static func selecting(fromSecondaryKey key: String) -> [Field] {
            Vary.selectingValues(fromSecondaryKey: key).map { Field(field: $0.name, value: $0.value) }
        }

        /// Fields as the inspect tables show them: `Name="value"`, or `Name=(absent)`.
        package static func shown(_ fields: [Field]) -> String {
            fields.map { "\($0.field)=\($0.value.map { "\"\($0)\"" } ?? "(absent)")" }.joined(separator: ", ")
        }
    }

    package struct Mismatch: Codable, Equatable, Sendable {
        package var variant: Int
        package var field: String
        package var stored: String?
        package var request: String?
    }

    package struct Freshness: Codable, Equatable, Sendable {
        package var fresh: Bool
        /// The directive or rule the lifetime comes from (`max-age`, `s-maxage`, `expires`,
        /// `heuristic`, `default`, …).
        package var source: String
        package var lifetime: Int64
        package var age: Int64
        /// Seconds of freshness left; negative: stale by that many.
        package var left: Int64
    }

    package struct Window: Codable, Equatable, Sendable {
        package var seconds: Int64
        /// Whether it would apply now: within the window, and not forbidden.
        package var applies: Bool
    }

    package static func explain(
        url: String, method: String, requestHeaders: HeaderFields, variants: [ObjectRecord], selected: ObjectRecord?,
        configuration: OutpostConfiguration, now: Double
    ) -> RequestExplanation {
        var explanation = RequestExplanation(
            action: "miss", reasons: [], url: url, method: method, variants: variants.count)
        let requestMethod = RequestMethod(token: method)
        guard requestMethod == .get || requestMethod == .head else {
            explanation.action = "pass"
            explanation.forward = CacheStatus.Forward.method.rawValue
            explanation.reasons.append("\(method) is not answered from storage (RFC 9111 §4): it goes to the origin")
            return explanation
        }
        let directives = RequestDirectives(requestHeaders, honour: configuration.cache.honourRequestDirectives)
        if directives.noStore {
            explanation.action = "pass"
            explanation.forward = CacheStatus.Forward.request.rawValue
            explanation.reasons.append(
                "the request says Cache-Control: no-store (RFC 9111 §5.2.1.5): nothing is served from or kept in storage"
            )
            return explanation
        }
        guard !variants.isEmpty else {
            explanation.forward = CacheStatus.Forward.uriMiss.rawValue
            explanation.reasons.append(
                "nothing is stored for this URL: it is fetched upstream (the origin, or the parent or owner peer)")
            return explanation
        }
        guard let record = selected, let index = variants.firstIndex(where: { $0.id == record.id }) else {
            explanation.noteVaryMiss(variants, requestHeaders: requestHeaders)
            return explanation
        }
        explanation.noteSelection(record, index: index)
        let state = explanation.noteFreshness(record, directives: directives, configuration: configuration, now: now)
        if record.response.status == 206 {
            explanation.action = "partial"
            explanation.forward = CacheStatus.Forward.partial.rawValue
            explanation.reasons.append(
                "only part of the representation is stored (\(record.response.headers["Content-Range"] ?? "?")): "
                    + "a single Range inside it is served from it; anything else fetches the rest")
            return explanation
        }
        explanation.noteDecision(record, state: state, directives: directives)
        explanation.noteAnswer(
            record, method: requestMethod, requestHeaders: requestHeaders, configuration: configuration)
        return explanation
    }

    /// What ``noteFreshness(_:directives:configuration:now:)`` worked out, for the decision.
    private struct FreshnessState {
        var cacheControl: CacheControl
        var lifetime: FreshnessLifetime
        var age: Double
        var left: Int64
        var staleIfError: Bool
    }

    /// No stored variant matches: for each, the Vary field whose value differs (RFC 9111 §4.1).
    private mutating func noteVaryMiss(_ variants: [ObjectRecord], requestHeaders: HeaderFields) {
        forward = CacheStatus.Forward.varyMiss.rawValue
        varyMismatches = Self.mismatches(variants, requestHeaders: requestHeaders)
        let fields = Set(varyMismatches?.map(\.field) ?? []).sorted().joined(separator: ", ")
        reasons.append(
            "\(variants.count) variant\(variants.count == 1 ? " is" : "s are") stored, none for this request's "
                + "\(fields.isEmpty ? "Vary fields" : fields) (RFC 9111 §4.1): it is fetched upstream")
    }

    private mutating func noteSelection(_ record: ObjectRecord, index: Int) {
        selectedVariant = index + 1
        let vary = Vary(record.response.headers)
        let fields =
            vary.fieldNames.isEmpty
            ? []
            : Field.selecting(fromSecondaryKey: record.secondaryKey)
        selectedBy = fields
        reasons.append(
            fields.isEmpty
                ? "variant \(index + 1) of \(variants) is selected (the response has no Vary)"
                : "variant \(index + 1) of \(variants) is selected by Vary: " + Field.shown(fields)
        )
    }

    /// Freshness and the stale windows, as the pipeline and the hit path work them out.
    private mutating func noteFreshness(
        _ record: ObjectRecord, directives: RequestDirectives, configuration: OutpostConfiguration, now: Double
    ) -> FreshnessState {
        let cacheControl = TargetedCacheControl.governing(
            record.response.headers, targets: configuration.targetedFields)
        let lifetime = CachePipeline.lifetime(of: record, cacheControl: cacheControl, configuration: configuration)
        let age = Age.current(of: record.response, now: now)
        let left = lifetime.remaining(atAge: age)
        freshness = Freshness(
            fresh: left > 0, source: lifetime.source.rawValue, lifetime: lifetime.seconds,
            age: Int64(age.rounded(.down)), left: left)
        let forbidsStale = Reuse.forbidsStale(cacheControl)
        if case .value(let window) = cacheControl.seconds("stale-while-revalidate") {
            staleWhileRevalidate = Window(
                seconds: window + min(left, 0), applies: !forbidsStale && left <= 0 && -left < window)
        }
        let staleIfErrorApplies = Reuse.staleIfErrorAllows(
            stored: record.response, responseCacheControl: cacheControl, lifetime: lifetime, request: directives,
            operatorWindow: configuration.cache.staleIfError, now: now)
        if case .value(let window) = cacheControl.seconds("stale-if-error") {
            staleIfError = Window(seconds: window + min(left, 0), applies: staleIfErrorApplies)
        } else if configuration.cache.staleIfError > 0 {
            staleIfError = Window(
                seconds: configuration.cache.staleIfError + min(left, 0), applies: staleIfErrorApplies)
        }
        return FreshnessState(
            cacheControl: cacheControl, lifetime: lifetime, age: age, left: left, staleIfError: staleIfErrorApplies)
    }

    /// Served as it is, stale because allowed, stale while revalidated, or revalidated first.
    private mutating func noteDecision(
        _ record: ObjectRecord, state: FreshnessState, directives: RequestDirectives
    ) {
        let left = state.left
        let decision = CachePipeline.reuseDecision(
            record, cacheControl: state.cacheControl, lifetime: state.lifetime, age: state.age,
            directives: directives)
        switch decision {
        case .fresh:
            action = "hit"
            reasons.append(
                "fresh: \(left) s of its \(state.lifetime.seconds) s lifetime (\(state.lifetime.source.rawValue)) "
                    + "left at age \(Int64(state.age)) s")
        case .staleAllowed(let reason):
            action = "stale-hit"
            reasons.append("stale by \(-left) s, served because the request allows it (\(reason.rawValue))")
        case .staleWhileRevalidate:
            action = "stale-while-revalidate"
            reasons.append(
                "stale by \(-left) s, within stale-while-revalidate (RFC 5861 §3): served now, refreshed "
                    + "upstream behind the client")
        case .mustValidate(let reason):
            action = "revalidate"
            forward =
                [ValidationReason.requestNoCache, .requestMaxAge, .requestMinFresh].contains(reason)
                ? CacheStatus.Forward.request.rawValue : CacheStatus.Forward.stale.rawValue
            reasons.append(Self.validationReason(reason, left: left))
            var conditional: [Field] = []
            if let etag = record.response.headers["ETag"] {
                conditional.append(Field(field: "If-None-Match", value: etag))
            }
            if let modified = record.response.headers["Last-Modified"] {
                conditional.append(Field(field: "If-Modified-Since", value: modified))
            }
            revalidateWith = conditional
            reasons.append(
                conditional.isEmpty
                    ? "it has no validator: the request is fetched whole, and its answer replaces the copy"
                    : "revalidated upstream with \(conditional.map(\.field).joined(separator: " and ")); a 304 "
                        + "refreshes the copy and it is served")
            if state.staleIfError {
                reasons.append(
                    "if the origin fails (5xx, or no answer), the stale copy is served instead (stale-if-error)")
            }
        }
    }

    /// Which bytes, in which coding, with which status (RFC 9110 §12.5.3, §13, §14).
    private mutating func noteAnswer(
        _ record: ObjectRecord, method: RequestMethod, requestHeaders: HeaderFields,
        configuration: OutpostConfiguration
    ) {
        guard let representation = Representation.choose(for: record, requestHeaders: requestHeaders) else {
            status = 406
            reasons.append("no coding it is stored in is acceptable to the request: 406")
            return
        }
        switch representation.source {
        case .primary: coding = representation.coding?.rawValue ?? "as stored"
        case .alternate(let alternate): coding = alternate.coding
        case .decoded(let from): coding = "identity decoded from \(from)"
        }
        let view = CachePipeline.representationView(record, representation, compression: configuration.compression)
        let length = StoredBytes(record, representation, inline: nil)?.length
        let answer = ClientAnswer.decide(
            method: method, requestHeaders: requestHeaders, selected: view, rangeLength: length,
            maxRanges: configuration.server.maxRanges)
        switch answer {
        case .whole:
            status = record.response.status
        case .range(let lower, let upper):
            status = 206
            range = "bytes \(lower)-\(upper)/\(length ?? 0)"
        case .multipart(let ranges):
            status = 206
            range = "\(ranges.count) ranges, as multipart/byteranges"
        case .rangeNotSatisfiable: status = 416
        case .notModified: status = 304
        case .preconditionFailed: status = 412
        case .notAcceptable: status = 406
        }
        reasons.append(
            "answered \(status ?? 0) with the \(coding ?? "stored") body" + (range.map { ", \($0)" } ?? ""))
    }

    static func validationReason(_ reason: ValidationReason, left: Int64) -> String {
        switch reason {
        case .stale:
            "stale by \(-left) s and nothing allows serving it stale now (RFC 9111 §4.2)"
        case .softPurge:
            "soft-purged: it must be revalidated before it is used again"
        case .responseNoCache:
            "the response says no-cache (RFC 9111 §5.2.2.4): every use is revalidated"
        case .requestNoCache:
            "the request says no-cache (RFC 9111 §5.2.1.4): the copy is revalidated first"
        case .requestMaxAge:
            "the request's max-age is below the copy's age (RFC 9111 §5.2.1.1)"
        case .requestMinFresh:
            "the request's min-fresh asks for more freshness than is left (RFC 9111 §5.2.1.3)"
        }
    }

    /// For each variant, the first Vary field whose value this request does not share.
    static func mismatches(_ variants: [ObjectRecord], requestHeaders: HeaderFields) -> [Mismatch] {
        variants.enumerated().compactMap { index, record in
            let vary = Vary(record.response.headers)
            let stored = Vary.selectingValues(fromSecondaryKey: record.secondaryKey)
            let wanted = Vary.selectingValues(fromSecondaryKey: vary.secondaryKey(for: requestHeaders))
            for (have, want) in zip(stored, wanted) where have.value != want.value {
                return Mismatch(variant: index + 1, field: have.name, stored: have.value, request: want.value)
            }
            return nil
        }
    }
}
