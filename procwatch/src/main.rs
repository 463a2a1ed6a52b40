fn main() {
    static OBJ: &[u8] = aya::include_bytes_aligned!(env!("PROCWATCH_EBPF_OBJECT"));
    println!("{}", OBJ.len());
}
