/// Vary (RFC 9111 §4.1): which request fields select among stored responses for one URL.
public struct Vary: Sendable, Equatable {
    /// Lower-cased field names in order of first appearance, without duplicates.
    public var fieldNames: [String]
    /// `*` anywhere: the response never matches a later request.
    public var isWildcard: Bool

    public init(fieldNames: [String], isWildcard: Bool = false) {
        self.fieldNames = fieldNames
        self.isWildcard = isWildcard
    }

    public init(_ headers: HeaderFields) {
        var names: [String] = []
        var wildcard = false
        for member in headers.listMembers("Vary") {
            if member == "*" {
                wildcard = true
                continue
            }
            let name = member.asciiLowercased()
            if !names.contains(name) { names.append(name) }
        }
        self.init(fieldNames: names, isWildcard: wildcard)
    }

    /// The secondary cache key of a request for a response with this Vary: for each named
    /// field, the request's value after combining lines and normalising whitespace around
    /// list commas; Accept-Encoding reduced to the one coding the cache would serve, so that
    /// any number of Accept-Encoding strings make at most three variants (br, gzip, identity);
    /// the fields in ``unorderedLists`` (Accept-Language) compared as sets of members.
    /// An absent field is written differently from an empty one.
    public func secondaryKey(for requestHeaders: HeaderFields) -> String {
        var key = ""
        for name in fieldNames {
            key += name
            if name == "accept-encoding" {
                key += "=" + AcceptEncoding(requestHeaders).preferredStorageCoding.rawValue
            } else if requestHeaders.contains(name) {
                let lines = requestHeaders.values(name)
                key += "=" + (Vary.unorderedLists.contains(name) ? Vary.normaliseSet(lines) : Vary.normalise(lines))
            } else {
                key += "\u{1}"
            }
            key += "\n"
        }
        return key
    }

    /// The request values a secondary key was made from, in order: each Vary field name with
    /// its normalised value, or nil when the request did not have the field (for inspection).
    public static func selectingValues(fromSecondaryKey key: String) -> [(name: String, value: String?)] {
        key.split(separator: "\n").map { line in
            if let equals = line.firstIndex(of: "=") {
                return (String(line[..<equals]), String(line[line.index(after: equals)...]))
            }
            return (String(line.filter { $0 != "\u{1}" }), nil)
        }
    }

    /// Request fields whose value is a list of equally weighted preferences (RFC 9110
    /// §12.4.2: order carries no preference, `q` does; tokens are case-insensitive), so two
    /// values that list the same members select the same variant: `en, de`, `eN,De` and
    /// `de, en` are one key. Lower-cased names; add a field here when its list has that
    /// meaning.
    public static let unorderedLists: Set<String> = ["accept-language"]

    /// A list compared as a set: members lower-cased, all whitespace removed (`en; q=0.5` is
    /// `en;q=0.5`), empty and repeated members dropped, sorted.
    static func normaliseSet(_ lines: [String]) -> String {
        let members = lines.flatMap { HeaderFields.splitList($0) }.map { member in
            String(member.asciiLowercased().filter { $0 != " " && $0 != "\t" })
        }
        return Set(members.filter { !$0.isEmpty }).sorted().joined(separator: ",")
    }

    static func normalise(_ lines: [String]) -> String {
        lines.flatMap { line -> [String] in
            // Whitespace inside a member matters only as a single separator.
            HeaderFields.splitList(line).map { member in
                member.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            }
        }.joined(separator: ",")
    }
}
