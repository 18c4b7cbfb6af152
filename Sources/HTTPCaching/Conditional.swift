/// Client preconditions evaluated against a stored response (RFC 9110 §13.2.2; RFC 9111 §4.3.2).
public enum ConditionalOutcome: Sendable, Equatable {
    /// Serve the response as usual.
    case proceed
    /// 304 Not Modified.
    case notModified
    /// 412 Precondition Failed.
    case preconditionFailed
}

public enum Conditional {
    /// Evaluates the request's preconditions in the order of RFC 9110 §13.2.2:
    /// If-Match, else If-Unmodified-Since; then If-None-Match, else If-Modified-Since
    /// (GET and HEAD only).
    public static func evaluate(
        method: String,
        requestHeaders: HeaderFields,
        stored: StoredResponse
    ) -> ConditionalOutcome {
        // Most requests carry no precondition: answer them without parsing anything.
        guard
            requestHeaders.contains(where: { field in
                field.name.utf8.count > 3 && field.name.utf8.first.map { $0 | 0x20 == UInt8(ascii: "i") } == true
                    && field.name.utf8.dropFirst().first.map { $0 | 0x20 == UInt8(ascii: "f") } == true
                    && field.name.utf8.dropFirst(2).first == UInt8(ascii: "-")
            })
        else { return .proceed }
        let storedTag = stored.entityTag
        let lastModified = stored.lastModified

        // Step 1: If-Match, strong comparison (§13.1.1).
        if let condition = EntityTagCondition(lines: requestHeaders.values("If-Match")) {
            let matches: Bool
            switch condition {
            case .any: matches = true
            case .tags(let tags): matches = storedTag.map { tag in tags.contains { $0.strongMatches(tag) } } ?? false
            }
            if !matches { return .preconditionFailed }
        } else if let since = requestHeaders["If-Unmodified-Since"].flatMap(HTTPDate.parse),
            let lastModified
        {
            // Step 2: If-Unmodified-Since, only without If-Match (§13.1.4).
            if lastModified > since { return .preconditionFailed }
        }

        let isGetOrHead = method == "GET" || method == "HEAD"
        // Step 3: If-None-Match, weak comparison (§13.1.2).
        if let condition = EntityTagCondition(lines: requestHeaders.values("If-None-Match")) {
            let matches: Bool
            switch condition {
            case .any: matches = true
            case .tags(let tags): matches = storedTag.map { tag in tags.contains { $0.weakMatches(tag) } } ?? false
            }
            if matches { return isGetOrHead ? .notModified : .preconditionFailed }
            return .proceed
        }
        // Step 4: If-Modified-Since, GET/HEAD only, without If-None-Match (§13.1.3). A cache
        // compares with Last-Modified, else Date, else the time it received the response
        // (RFC 9111 §4.3.2).
        if isGetOrHead, !requestHeaders.contains("If-None-Match"),
            let since = requestHeaders["If-Modified-Since"].flatMap(HTTPDate.parse)
        {
            let modified = lastModified ?? stored.dateValue ?? Int64(stored.responseTime)
            if modified <= since { return .notModified }
        }
        return .proceed
    }

    /// Fields a 304 carries: those a 200 would have that describe freshness and identity
    /// (RFC 9110 §15.4.5).
    public static let notModifiedFields: [String] = [
        "Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary", "Last-Modified",
    ]

    /// The header fields of a 304 answered from storage.
    public static func notModifiedHeaders(from stored: HeaderFields) -> HeaderFields {
        var headers = HeaderFields()
        for field in stored where notModifiedFields.contains(where: { $0.equalsIgnoringASCIICase(field.name) }) {
            headers.add(field.name, field.value)
        }
        return headers
    }
}

/// Validation of a stored response with the origin (RFC 9111 §4.3.1, §4.3.3, §4.3.4).
public enum Validation {
    /// The conditional fields to send upstream: If-None-Match with the stored entity tag and
    /// If-Modified-Since with the stored Last-Modified (never the Date, §4.3.1).
    public static func conditionalHeaders(for stored: StoredResponse) -> [(String, String)] {
        var headers: [(String, String)] = []
        if let tag = stored.headers["ETag"], EntityTag(parsing: tag) != nil {
            headers.append(("If-None-Match", String(tag.trimmingOWS())))
        }
        if let lastModified = stored.headers["Last-Modified"], HTTPDate.parse(lastModified) != nil {
            headers.append(("If-Modified-Since", String(lastModified.trimmingOWS())))
        }
        return headers
    }

    public static func canValidate(_ stored: StoredResponse) -> Bool {
        !conditionalHeaders(for: stored).isEmpty
    }

    /// Whether a 304 refers to this stored response (§4.3.4): a strong entity tag in the 304
    /// must equal the stored one; a weak or absent tag falls back to Last-Modified; with no
    /// validators at all, the single stored response is selected.
    public static func notModifiedSelects(_ stored: StoredResponse, notModifiedHeaders: HeaderFields) -> Bool {
        if let tag = notModifiedHeaders["ETag"].flatMap(EntityTag.init(parsing:)) {
            guard let storedTag = stored.entityTag else { return false }
            return tag.isWeak ? tag.weakMatches(storedTag) : tag.strongMatches(storedTag)
        }
        if let lastModified = notModifiedHeaders["Last-Modified"].flatMap(HTTPDate.parse) {
            return stored.lastModified == lastModified
        }
        return true
    }

    /// Fields a 304 must not change in the stored response (§3.2): Content-Length (a 304 has no
    /// body, so its length says nothing about the stored one). Hop-by-hop fields are removed
    /// before the merge (§3.1).
    static let keptOnUpdate = ["content-length"]

    /// The stored response updated with a 304's fields (§3.2, §4.3.4): every field the 304
    /// carries replaces the stored one, except Content-Length and hop-by-hop fields; times reset.
    public static func updated(
        _ stored: StoredResponse,
        withNotModified headers: HeaderFields,
        requestTime: Double,
        responseTime: Double
    ) -> StoredResponse {
        let incoming = HopByHop.storableHeaders(headers)
        var result = stored.headers
        // Names compared in place, case-insensitively: a 304 carries a handful of fields, and
        // lower-cased copies in a Set cost more than the comparisons.
        var replaced: [String] = []
        for field in incoming {
            guard !keptOnUpdate.contains(where: { $0.equalsIgnoringASCIICase(field.name) }) else { continue }
            if !replaced.contains(where: { $0.equalsIgnoringASCIICase(field.name) }) {
                result.remove(field.name)
                replaced.append(field.name)
            }
            result.add(field.name, field.value)
        }
        // A 304 without Age means the origin's copy is new: the stored Age no longer applies.
        if !incoming.contains("Age") { result.remove("Age") }
        if !incoming.contains("Date") {
            result.replace("Date", with: HTTPDate.format(Int64(responseTime)))
        }
        var updated = StoredResponse(
            status: stored.status, headers: result, requestTime: requestTime, responseTime: responseTime)
        updated.lifetimeCap = stored.lifetimeCap
        return updated
    }
}
