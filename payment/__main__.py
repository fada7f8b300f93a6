from mesh.process import run_service
from payment.bootstrap import bootstrap
from payment.settings import PaymentSettings

if __name__ == "__main__":
    run_service("payment", PaymentSettings, bootstrap)
