/// Accept-Encoding (RFC 9110 §12.5.3) reduced to what this cache can serve.
public enum ContentCodingName: String, Sendable, CaseIterable, Equatable {
    case br
    case gzip
    case identity
}

public struct AcceptEncoding: Sendable, Equatable {
    /// Lower-cased coding (or `*`) to its q-value in thousandths.
    public private(set) var weights: [String: Int]
    public let isPresent: Bool

    public init(_ headers: HeaderFields) {
        self.init(lines: headers.values("Accept-Encoding"))
    }

    public init(lines: [String]) {
        var weights: [String: Int] = [:]
        for member in lines.flatMap({ HeaderFields.splitList($0) }) {
            let parts = member.split(separator: ";", omittingEmptySubsequences: false)
            let coding = parts[0].trimmingOWS().asciiLowercased()
            guard !coding.isEmpty else { continue }
            var q = 1000
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].trimmingOWS().asciiLowercased() == "q" else { continue }
                q = AcceptEncoding.parseQ(pair[1].trimmingOWS()) ?? 0
            }
            // x-gzip is an alias of gzip (RFC 9110 §8.4.1.3).
            let name = coding == "x-gzip" ? "gzip" : coding
            weights[name] = max(weights[name] ?? 0, q)
        }
        self.weights = weights
        self.isPresent = !lines.isEmpty
    }

    /// The q-value (in thousandths) the client gives a coding; 0 means "not acceptable".
    public func quality(_ coding: ContentCodingName) -> Int {
        if let explicit = weights[coding.rawValue] { return explicit }
        if let star = weights["*"] { return star }
        // identity is acceptable unless excluded by `identity;q=0` or `*;q=0` (§12.5.3); other
        // codings are acceptable only when named, or when there is no field at all.
        return coding == .identity || !isPresent ? 1000 : 0
    }

    /// The coding this cache would serve the client, preferring br, then gzip, then identity
    /// among those with the highest q-value. Used to normalise the cache key (RFC 9111 §4.1
    /// allows normalising before matching). Without an Accept-Encoding field the client gets
    /// identity: RFC 9110 §12.5.3 allows any coding, but identity is what such clients expect.
    public var preferredStorageCoding: ContentCodingName {
        guard isPresent else { return .identity }
        var best: (ContentCodingName, Int)?
        for coding in ContentCodingName.allCases {
            let q = quality(coding)
            guard q > 0 else { continue }
            if best == nil || q > best!.1 { best = (coding, q) }
        }
        return best?.0 ?? .identity
    }

    /// Parses a qvalue: "0", "1", "0.8", "1.000" (RFC 9110 §12.4.2).
    static func parseQ<S: StringProtocol>(_ text: S) -> Int? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, whole.count == 1, let integer = Int(whole), integer <= 1 else { return nil }
        var thousandths = integer * 1000
        if parts.count == 2 {
            let fraction = parts[1]
            guard fraction.count <= 3, fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            let padded = fraction + String(repeating: "0", count: 3 - fraction.count)
            thousandths += Int(padded) ?? 0
        }
        return thousandths <= 1000 ? thousandths : nil
    }
}
