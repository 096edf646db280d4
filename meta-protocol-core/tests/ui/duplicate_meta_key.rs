use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, meta = "method")]
    method_id: u16,
    #[field(offset = 2, meta = "method")]
    method_version: u8,
}

fn main() {}
