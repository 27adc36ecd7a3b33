"""Train the bundled gated example: a GRU that reads each 8x8 digit (scikit-learn's bundled
`load_digits`) row by row, then a Linear classifier. Writes TorchScript to
examples/gru_digits.pt and the held-out rows to examples/digits_test.npy.

    python examples/train_gru_digits.py     (about 20 s on 2 cores)
"""
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gatec.nn import RecurrentClassifier

HERE = Path(__file__).parent


def main():
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 columns): a sequence of 8 steps
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0)
    model = RecurrentClassifier(8, 32, 10, cell="gru")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(40):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"GRU(8->32)+Linear on digits rows: test accuracy {100 * acc:.1f}%")
    torch.jit.save(torch.jit.script(model), str(HERE / "gru_digits.pt"))
    np.save(HERE / "digits_test.npy", x_test)


if __name__ == "__main__":
    main()
