use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, meta = "id")]
    id: [u8; 16],
}

fn main() {}
