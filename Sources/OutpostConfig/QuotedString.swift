/// A string between double quotes, valid both as a JSON string (RFC 8259 §7) and as a TOML
/// basic string: `"` and `\` escaped, newline, carriage return and tab by their letters, every
/// other control character (and DEL, which TOML does not allow raw) as `\u00XX`. For the
/// JSON log lines and the TOML that `check-config` prints.
package enum QuotedString {
    package static func append(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0}"..."\u{1F}", "\u{7F}":
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    package static func quoted(_ text: String) -> String {
        var out = ""
        append(text, to: &out)
        return out
    }
}
