import HTTPCaching
import NIOHTTP1

extension HeaderFields {
    /// NIO's header list as ours.
    init(nio headers: HTTPHeaders) {
        self.init(fields: headers.map { HeaderFields.Field(name: $0.name, value: $0.value) })
    }
}
