//! `cni6`: the operator's tool. All logic lives in the library ([`cni6::cli`]).

fn main() -> std::process::ExitCode {
    cni6::cli::main()
}
