/// Status code classes the caching rules depend on (RFC 9110 §15, RFC 9111 §3).
public enum StatusCodes {
    /// Heuristically cacheable by default (RFC 9110 §15.1).
    public static func isHeuristicallyCacheable(_ status: Int) -> Bool {
        switch status {
        case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501: return true
        default: return false
        }
    }

    /// Final status codes whose semantics this cache understands (RFC 9111 §3: a cache
    /// only stores responses whose status it understands).
    public static func isUnderstood(_ status: Int) -> Bool {
        switch status {
        case 200...208, 226, 300...305, 307, 308: return true
        case 400...418, 421...426, 428, 429, 431, 451: return true
        case 500...508, 510, 511: return true
        default: return false
        }
    }

    public static func isFinal(_ status: Int) -> Bool { status >= 200 && status <= 599 }
}
