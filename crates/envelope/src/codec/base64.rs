//! Standard base64 (RFC 4648 section 4) for CloudEvents `data_base64`.
