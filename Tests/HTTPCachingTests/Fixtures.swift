import HTTPCaching

/// A stored response received at `at` (request sent at the same instant) with these fields.
func response(_ status: Int, _ fields: [(String, String)], at time: Double = 1_000_000) -> StoredResponse {
    StoredResponse(status: status, headers: HeaderFields(fields), requestTime: time, responseTime: time)
}

/// A stored 200 response.
func response(_ fields: [(String, String)], at time: Double = 1_000_000) -> StoredResponse {
    response(200, fields, at: time)
}

let epochDate = HTTPDate.format(1_000_000)
