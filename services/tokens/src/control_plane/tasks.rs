//! The control plane's background tasks, each under a name, so that a stop
//! ends every one of them and says which had already ended.

use std::future::Future;

use tokio::task::JoinHandle;

#[derive(Default)]
pub struct Tasks {
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.running.push((name, tokio::spawn(task)));
    }

    /// The names of the tasks that have ended: none should have, before a
    /// stop (each runs until the process stops).
    pub fn ended(&self) -> Vec<&'static str> {
        self.running
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Ends every task and waits until each is gone (and with it what it
    /// held of the store).
    pub async fn stop(self) {
        for (_, task) in &self.running {
            task.abort();
        }
        for (name, task) in self.running {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(task = name, "the control plane's {name} task had panicked");
            }
        }
    }
}
