//! The process group `kiln train` is one rank of under `mpirun` (the `mpi` feature): MPI's
//! world communicator as a [`kiln_graph::Collective`]. Without the feature, or in a group of
//! one, there is none.

use std::rc::Rc;

use kiln_graph::Collective;

/// MPI, from its start in [`start`] to the end of the command; None outside a group.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

thread_local! {
    static GROUP: std::cell::RefCell<Option<Rc<dyn Collective>>> = const { std::cell::RefCell::new(None) };
}

/// Starts MPI where kiln was built with it (a process started without `mpirun` is a group of
/// one, and runs as it would without MPI). Keep the session until the command ends: dropping it
/// finalizes MPI.
pub fn start() -> Session {
    #[cfg(feature = "mpi")]
    {
        let universe = mpi::initialize();
        if let Some(u) = &universe {
            use mpi::traits::Communicator;
            let world = u.world();
            if world.size() > 1 {
                GROUP.with(|g| *g.borrow_mut() = Some(Rc::new(Mpi { world })));
            }
        }
        Session {
            _universe: universe,
        }
    }
    #[cfg(not(feature = "mpi"))]
    Session {}
}

/// Ranks `mpirun` (or another MPI launcher) says this process is one of, read from its
/// environment: what a kiln built without the `mpi` feature can tell of the job it is in.
pub fn launched_ranks() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .filter(|&n: &usize| n > 1)
}

/// The group this process is a rank of, when it is one of several.
pub fn current() -> Option<Rc<dyn Collective>> {
    GROUP.with(|g| g.borrow().clone())
}

/// Ends every rank of the group after this one failed (printing its error is the caller's):
/// MPI's abort, so that `mpirun` stops the others rather than leave them waiting in a sum.
pub fn abort(code: u8) {
    #[cfg(feature = "mpi")]
    if let Some(group) = current() {
        if group.size() > 1 {
            use mpi::traits::Communicator;
            mpi::topology::SimpleCommunicator::world().abort(i32::from(code));
        }
    }
    let _ = code;
}

#[cfg(feature = "mpi")]
struct Mpi {
    world: mpi::topology::SimpleCommunicator,
}

#[cfg(feature = "mpi")]
impl Collective for Mpi {
    fn rank(&self) -> usize {
        use mpi::traits::Communicator;
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        use mpi::traits::Communicator;
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> kiln_graph::Result<()> {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }

    fn broadcast(&self, data: &mut [u8]) -> kiln_graph::Result<()> {
        use mpi::traits::{Communicator, Root};
        self.world.process_at_rank(0).broadcast_into(data);
        Ok(())
    }
}
