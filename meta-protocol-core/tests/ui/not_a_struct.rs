use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
enum H {
    A,
}

fn main() {}
