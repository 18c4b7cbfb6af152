/// The purge tags an origin attaches to a response: `Surrogate-Key` (space-separated, as
/// Fastly defines it) and `Cache-Tag` (comma-separated, as Cloudflare and Akamai define it).
/// Both are the origin's instructions to this cache, not end-to-end fields.
public enum SurrogateKeys {
    /// Field names that carry tags; removed from client responses unless configured otherwise.
    public static let fieldNames = ["Surrogate-Key", "Cache-Tag"]

    /// Is this field one of the tag fields? (Cheap enough for every response head.)
    public static func isTagField(_ name: String) -> Bool {
        let count = name.utf8.count
        guard count == 13 || count == 9 else { return false }
        return name.equalsIgnoringASCIICase("Surrogate-Key") || name.equalsIgnoringASCIICase("Cache-Tag")
    }

    /// The longest tag indexed (bytes); longer ones are ignored (LMDB keys are bounded).
    public static let maxTagLength = 200

    /// The tags of a response, in order of first appearance, without duplicates. Tags are
    /// case-sensitive; empty and over-long ones are dropped.
    public static func tags(in headers: HeaderFields) -> [String] {
        var seen = Set<String>()
        var tags: [String] = []
        func add<S: StringProtocol>(_ raw: S) {
            let tag = String(raw.trimmingOWS())
            guard isValid(tag), seen.insert(tag).inserted else { return }
            tags.append(tag)
        }
        for value in headers.values("Surrogate-Key") {
            for tag in value.split(whereSeparator: { $0 == " " || $0 == "\t" }) { add(tag) }
        }
        for value in headers.values("Cache-Tag") {
            for tag in value.split(separator: ",") { add(tag) }
        }
        return tags
    }

    /// A tag an operator may purge by: 1 to 200 bytes, visible ASCII without space or comma.
    public static func isValid(_ tag: String) -> Bool {
        !tag.isEmpty && tag.utf8.count <= maxTagLength
            && tag.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") }
    }
}
